//! Request/reply: answered by one responder, shared among several, no
//! responder fails at once, an unanswered request times out.

use std::time::Duration;

use herald::{ErrorKind, Reply};

use super::kind;
use crate::TestBus;

const WAIT: Duration = Duration::from_secs(5);

/// A request gets its responder's reply, headers included.
pub async fn a_request_is_answered_by_its_responder(bus: &TestBus) {
    let _service = bus
        .serve("greet.*", |req| async move {
            let name = String::from_utf8_lossy(&req.payload).into_owned();
            let lang = req.headers.get("lang").cloned().unwrap_or_default();
            Reply::new(format!("hello {name}"))
                .header("subject", req.subject.as_str())
                .header("lang", lang)
        })
        .await
        .unwrap();
    let mut headers = herald::Headers::new();
    headers.insert("lang".into(), "en".into());
    let reply = bus
        .request_with_headers("greet.ann", headers, "ann", WAIT)
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"hello ann");
    assert_eq!(reply.headers["subject"], "greet.ann");
    assert_eq!(reply.headers["lang"], "en");
    // Requests are not stored anywhere.
    assert!(bus.streams().await.unwrap().is_empty());
}

/// A request may wait for ever (`Duration::MAX`) for its reply.
pub async fn a_request_asked_to_wait_for_ever_gets_its_reply(bus: &TestBus) {
    let _service = bus
        .serve("patient.*", |_| async move { Reply::new("here") })
        .await
        .unwrap();
    let reply = bus.request("patient.one", "x", Duration::MAX).await.unwrap();
    assert_eq!(&reply.payload[..], b"here");
}

/// With nobody serving the subject a request fails at once, not at its timeout.
pub async fn a_request_with_no_responder_fails_at_once(bus: &TestBus) {
    let started = tokio::time::Instant::now();
    let err = bus
        .request("nobody.home", "?", Duration::from_secs(30))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoResponders, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "it did not wait for the timeout"
    );

    // A responder on another subject does not count; a dropped one stops counting.
    let other = bus.serve("elsewhere", |_| async { Reply::new("x") }).await.unwrap();
    assert_eq!(
        kind(bus.request("nobody.home", "?", WAIT).await),
        ErrorKind::NoResponders
    );
    let here = bus.serve("nobody.home", |_| async { Reply::new("now") }).await.unwrap();
    assert_eq!(
        &bus.request("nobody.home", "?", WAIT).await.unwrap().payload[..],
        b"now"
    );
    drop(here);
    drop(other);
    tokio::task::yield_now().await;
    // A dropped handle unregisters as its task ends (on a server, once its
    // unsubscribe arrives); a request in between may time out or find the
    // responder closing.
    let mut outcome = kind(bus.request("nobody.home", "?", Duration::from_millis(100)).await);
    for _ in 0..50 {
        if outcome != ErrorKind::Timeout && outcome != ErrorKind::Closed {
            break;
        }
        outcome = kind(bus.request("nobody.home", "?", Duration::from_millis(100)).await);
    }
    assert_eq!(outcome, ErrorKind::NoResponders);
}

/// A responder that never answers makes the request time out.
pub async fn an_unanswered_request_times_out(bus: &TestBus) {
    let mut responder = bus.responder("slow.op").await.unwrap();
    let requester = {
        let bus = (*bus).clone();
        tokio::spawn(async move { bus.request("slow.op", "work", Duration::from_secs(2)).await })
    };
    let request = responder.next().await.unwrap();
    assert_eq!(&request.payload[..], b"work");
    let started = tokio::time::Instant::now();
    let err = requester.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(
        started.elapsed() <= Duration::from_secs(2) + bus.timer_slack(),
        "{:?}",
        started.elapsed()
    );
    // Answering late tells the responder nobody is listening.
    assert_eq!(kind(request.respond(Reply::new("too late"))), ErrorKind::Closed);
}

/// Several responders share the requests; each request is answered once.
pub async fn requests_are_shared_among_responders(bus: &TestBus) {
    let mut services = Vec::new();
    for name in ["a", "b", "c"] {
        services.push(
            bus.serve("calc.>", move |_| async move { Reply::new(name) })
                .await
                .unwrap(),
        );
    }
    let mut counts = std::collections::HashMap::new();
    for i in 0..30 {
        let reply = bus.request(format!("calc.add.{i}"), "1+1", WAIT).await.unwrap();
        *counts
            .entry(String::from_utf8(reply.payload.to_vec()).unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(counts.len(), 3, "every responder took a share: {counts:?}");
    assert_eq!(counts.values().sum::<i32>(), 30);
}

/// Bad subjects are typed errors.
pub async fn invalid_request_subjects_are_rejected(bus: &TestBus) {
    assert_eq!(kind(bus.request("a..b", "x", WAIT).await), ErrorKind::InvalidSubject);
    assert_eq!(kind(bus.request("a.*", "x", WAIT).await), ErrorKind::InvalidSubject);
    assert_eq!(kind(bus.request("$sys.x", "x", WAIT).await), ErrorKind::InvalidSubject);
    assert_eq!(kind(bus.responder("$sys.>").await), ErrorKind::InvalidSubject);
    assert_eq!(kind(bus.responder("a.>.b").await), ErrorKind::InvalidSubject);
}
