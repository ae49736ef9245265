//! `/metrics`: what was published and delivered through the server, open
//! connections, slow-consumer disconnects and every consumer's lag, in the
//! Prometheus text format.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald::{Bus, ManualClock};
use herald_server::{Limits, Server};
use tokio_tungstenite::tungstenite::Message;

/// The samples of a scrape, by name with labels (`name{a="b"}`).
async fn scrape(addr: std::net::SocketAddr) -> HashMap<String, f64> {
    let response = common::get(addr, "/metrics", &[]).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text();
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        samples.insert(name.to_owned(), value.parse().unwrap());
    }
    // Every family is announced with its type.
    for name in samples.keys() {
        let family = name.split('{').next().unwrap();
        assert!(text.contains(&format!("# TYPE {family} ")), "{family} has no TYPE line");
    }
    samples
}

#[tokio::test]
async fn metrics_count_publishes_deliveries_connections_and_consumer_lag() {
    let clock = ManualClock::starting_now();
    let hosted = Bus::builder().clock(clock.clone()).open().await.unwrap();
    let addr = common::start(Server::new(hosted.clone())).await;
    let remote = Bus::connect(format!("ws://{addr}/v1/ws")).await.unwrap();
    // From the first seq: "new messages" would be judged by the client's
    // clock, and this server's clock is a manual one.
    let mut live = remote
        .subscribe_from("orders.>", herald::ReadFrom::Seq(1))
        .await
        .unwrap();
    for i in 0..3 {
        remote.publish("orders.created", format!("order-{i:02}")).await.unwrap();
    }
    // A duplicate is acknowledged but not counted again.
    let id = herald::OutgoingMessage::new(herald::Subject::new("orders.paid").unwrap(), "paid-0001").id("p-1");
    remote.publish_message(id.clone()).await.unwrap();
    assert!(remote.publish_message(id).await.unwrap().duplicate);
    for _ in 0..4 {
        live.next().await.unwrap();
    }
    let consumer = remote.consumer("orders", "billing").create().await.unwrap();
    let fetched = consumer.fetch(1, Duration::ZERO).await.unwrap();
    fetched[0].ack().await.unwrap();
    clock.advance(Duration::from_secs(90));

    let samples = scrape(addr).await;
    assert_eq!(samples["herald_published_messages_total"], 4.0);
    assert_eq!(samples["herald_published_bytes_total"], 4.0 * 8.0 + 1.0);
    // Four messages to the subscription, one to the consumer.
    assert_eq!(samples["herald_delivered_messages_total"], 5.0);
    assert_eq!(samples["herald_connections"], 1.0);
    assert_eq!(samples["herald_connections_total"], 1.0);
    assert_eq!(samples["herald_slow_consumer_disconnects_total"], 0.0);
    assert_eq!(samples[r#"herald_stream_messages{stream="orders"}"#], 4.0);
    let lag = r#"{stream="orders",consumer="billing"}"#;
    assert_eq!(samples[&format!("herald_consumer_lag_messages{lag}")], 3.0);
    assert_eq!(samples[&format!("herald_consumer_lag_seconds{lag}")], 90.0);
    assert_eq!(samples[&format!("herald_consumer_in_flight{lag}")], 0.0);

    drop((live, fetched, consumer, remote));
    // The session ends once the client's connection is gone.
    let mut open = 1.0;
    for _ in 0..200 {
        open = scrape(addr).await["herald_connections"];
        if open == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(open, 0.0);
}

#[tokio::test]
async fn a_slow_consumer_disconnect_is_counted() {
    let hosted = Bus::memory().unwrap();
    let limits = Limits::default()
        .outbound_buffer(4)
        .slow_consumer_timeout(Duration::from_millis(100));
    let addr = common::start(Server::new(hosted.clone()).limits(limits).unwrap()).await;
    hosted
        .publish_batch(
            (0..5_000)
                .map(|i| herald::OutgoingMessage::new(herald::Subject::new("slow.x").unwrap(), format!("{i:0>1000}")))
                .collect(),
        )
        .await
        .unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .unwrap();
    let subscribe = r#"{"id": 1, "op": "subscribe", "sub": 1, "pattern": "slow.>", "from": {"seq": 1}}"#;
    socket.send(Message::Text(subscribe.into())).await.unwrap();
    // Never read until the server has given up on this reader.
    let mut counted = 0.0;
    for _ in 0..500 {
        counted = scrape(addr).await["herald_slow_consumer_disconnects_total"];
        if counted > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(counted, 1.0);
    // The close carries the reason.
    let mut reason = None;
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Close(Some(close)) = message {
            reason = Some(close.reason.to_string());
        }
    }
    assert!(reason.unwrap().contains("slow consumer"));
}
