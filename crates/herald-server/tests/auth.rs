//! Access tokens, end to end: a server with tokens refuses callers without
//! one or with a wrong one, and holds each token to its grants on publish,
//! subscribe, replay, consume and administration, over WebSocket and HTTP.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use herald::{Bus, ConnectOptions, ErrorKind, StreamConfig};
use herald_server::{Access, Permissions, Server, Token};

const WRITER: &str = "writer-secret";
const ADMIN: &str = "admin-secret";

/// A server whose `writer` token may publish and read `orders.>` except
/// `orders.secret.>`, and whose `admin` token may do everything. Streams
/// `orders` and `payments` exist.
async fn server() -> (std::net::SocketAddr, Bus) {
    let bus = Bus::memory().unwrap();
    let orders = StreamConfig::new("orders").unwrap().subject_index(true);
    bus.create_stream(orders).await.unwrap();
    bus.create_stream(StreamConfig::new("payments").unwrap()).await.unwrap();
    let orders = Permissions::new(["orders.>"], ["orders.secret.>"]).unwrap();
    let access = Access::Tokens(vec![
        Token::new("writer", WRITER).publish(orders.clone()).subscribe(orders),
        Token::new("admin", ADMIN).admin(),
    ]);
    let addr = common::start(Server::new(bus.clone()).access(access)).await;
    (addr, bus)
}

async fn connect(addr: std::net::SocketAddr, token: &str) -> herald::Result<Bus> {
    Bus::connect_with(ConnectOptions::new(format!("ws://{addr}/v1/ws")).token(token)).await
}

#[tokio::test]
async fn a_caller_without_a_token_or_with_a_wrong_one_is_refused() {
    let (addr, _) = server().await;
    let none = Bus::connect(format!("ws://{addr}/v1/ws")).await.unwrap_err();
    assert_eq!(none.kind(), ErrorKind::PermissionDenied, "{none}");
    assert!(none.to_string().contains("requires an access token"), "{none}");
    let wrong = connect(addr, "guess").await.unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::PermissionDenied, "{wrong}");
    assert!(wrong.to_string().contains("unknown access token"), "{wrong}");

    // Over HTTP: 401 with the error as JSON and a Bearer challenge.
    for headers in [vec![], vec![("authorization", "Bearer guess")]] {
        let response = common::get(addr, "/metrics", &headers).await;
        assert_eq!(response.status, 401, "{}", response.text());
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        assert_eq!(response.json()["kind"], "permission_denied");
    }
    // The token in the query string (for browsers), and in the header.
    let query = common::get(addr, &format!("/metrics?access_token={ADMIN}"), &[]).await;
    assert_eq!(query.status, 200, "{}", query.text());
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(
        common::get(addr, "/metrics", &[("authorization", &bearer)])
            .await
            .status,
        200
    );
    // Health checks need no token.
    assert_eq!(common::get(addr, "/healthz", &[]).await.status, 200);
}

#[tokio::test]
async fn publishing_to_a_denied_subject_is_refused_and_stores_nothing() {
    let (addr, hosted) = server().await;
    let writer = connect(addr, WRITER).await.unwrap();
    writer.publish("orders.eu.created", "ok").await.unwrap();
    for subject in ["orders.secret.plan", "payments.sent"] {
        let err = writer.publish(subject, "no").await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{subject}: {err}");
        assert!(err.to_string().contains(subject), "{err}");
    }
    // A batch with one denied message is refused whole.
    let batch = vec![
        herald::OutgoingMessage::new(herald::Subject::new("orders.eu.a").unwrap(), "a"),
        herald::OutgoingMessage::new(herald::Subject::new("orders.secret.b").unwrap(), "b"),
    ];
    let err = writer.publish_batch(batch).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(hosted.stream_info("orders").await.unwrap().state.messages, 1);
    assert_eq!(hosted.stream_info("payments").await.unwrap().state.messages, 0);
}

#[tokio::test]
async fn subscriptions_are_held_to_the_token_and_skip_denied_subjects() {
    let (addr, hosted) = server().await;
    let writer = connect(addr, WRITER).await.unwrap();
    for pattern in ["orders.secret.>", "payments.>", ">"] {
        let err = writer.subscribe(pattern).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{pattern}: {err}");
    }
    // `orders.>` is allowed; the denied subjects inside it are not delivered.
    let mut live = writer.subscribe("orders.>").await.unwrap();
    hosted.publish("orders.eu.1", "one").await.unwrap();
    hosted.publish("orders.secret.plan", "hidden").await.unwrap();
    hosted.publish("orders.eu.2", "two").await.unwrap();
    let first = live.next().await.unwrap();
    let second = live.next().await.unwrap();
    assert_eq!(
        (first.subject.as_str(), second.subject.as_str()),
        ("orders.eu.1", "orders.eu.2")
    );
    assert_eq!(second.seq, 3, "the secret message was stored, and skipped");
}

#[tokio::test]
async fn replaying_a_stream_needs_every_subject_of_it() {
    let (addr, hosted) = server().await;
    hosted.publish("orders.eu.1", "one").await.unwrap();
    hosted.publish("orders.secret.plan", "hidden").await.unwrap();
    hosted.publish("payments.sent", "paid").await.unwrap();
    let writer = connect(addr, WRITER).await.unwrap();
    // The whole `orders` stream includes denied subjects; `payments` is not granted.
    for stream in ["orders", "payments"] {
        let err = writer
            .read(stream, herald::ReadRange::from_seq(1, 10))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{stream}: {err}");
        let err = writer.get(stream, 1).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{stream}: {err}");
    }
    // One allowed subject may be replayed; a denied one may not.
    let allowed = writer.read_subject("orders", "orders.eu.1", 1, 10).await.unwrap();
    assert_eq!(allowed.len(), 1);
    let err = writer
        .read_subject("orders", "orders.secret.plan", 1, 10)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    let err = writer.last("orders", "orders.secret.plan").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    // So may a live subscription replaying from the start, without the secret.
    let mut replay = writer
        .subscribe_from("orders.>", herald::ReadFrom::Seq(1))
        .await
        .unwrap();
    assert_eq!(replay.next().await.unwrap().subject.as_str(), "orders.eu.1");
    hosted.publish("orders.eu.2", "two").await.unwrap();
    assert_eq!(replay.next().await.unwrap().subject.as_str(), "orders.eu.2");
}

#[tokio::test]
async fn consuming_needs_the_consumers_subjects_and_administration_needs_admin() {
    let (addr, hosted) = server().await;
    hosted.publish("orders.eu.1", "one").await.unwrap();
    hosted.publish("orders.secret.plan", "hidden").await.unwrap();
    hosted
        .consumer("orders", "eu")
        .filter("orders.eu.>")
        .create()
        .await
        .unwrap();
    hosted
        .consumer("orders", "secret")
        .filter("orders.secret.>")
        .create()
        .await
        .unwrap();
    hosted.consumer("orders", "everything").create().await.unwrap();
    let writer = connect(addr, WRITER).await.unwrap();

    let eu = writer.bind_consumer("orders", "eu").await.unwrap();
    let received = eu.fetch(10, Duration::ZERO).await.unwrap();
    assert_eq!(received.len(), 1);
    received[0].ack().await.unwrap();
    // Widened by an admin to the denied subjects: the same session's next
    // fetch is refused (a grant is not remembered past the consumer's change).
    let mut widened = eu.info().await.unwrap().config;
    widened.filters = vec![herald::Pattern::new("orders.>").unwrap()];
    hosted
        .bind_consumer("orders", "eu")
        .await
        .unwrap()
        .update(widened)
        .await
        .unwrap();
    let err = eu.fetch(10, Duration::ZERO).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    for name in ["secret", "everything"] {
        let err = writer
            .backend()
            .fetch(
                &herald::StreamName::new("orders").unwrap(),
                &herald::ConsumerName::new(name).unwrap(),
                &herald::ConsumerName::new("m").unwrap(),
                10,
                Duration::ZERO,
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{name}: {err}");
    }
    // Nothing was delivered to the refused consumers.
    for name in ["secret", "everything"] {
        let info = hosted
            .bind_consumer("orders", name)
            .await
            .unwrap()
            .info()
            .await
            .unwrap();
        assert_eq!(info.delivered, 0, "{name}");
    }

    // Administration: refused to the writer, allowed to the admin.
    let err = writer
        .create_stream(StreamConfig::new("audit").unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(
        writer.delete_consumer("orders", "eu").await.unwrap_err().kind(),
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        writer
            .purge_stream("orders", herald::Purge::all())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::PermissionDenied
    );
    // Looking is allowed.
    let streams = writer.streams().await.unwrap();
    assert!(streams.iter().any(|s| s.config.name.as_str() == "payments"));
    let admin = connect(addr, ADMIN).await.unwrap();
    admin.create_stream(StreamConfig::new("audit").unwrap()).await.unwrap();
    assert_eq!(
        admin
            .read("orders", herald::ReadRange::from_seq(1, 10))
            .await
            .unwrap()
            .len(),
        2
    );

    let bearer = format!("Bearer {WRITER}");
    let metrics = common::get(addr, "/metrics", &[("authorization", &bearer)]).await;
    assert_eq!(metrics.status, 403, "{}", metrics.text());
}
