//! A slow consumer against `herald serve`: a WebSocket subscriber that never
//! reads, on a stream holding 128 MiB. The server reads the log only as fast
//! as the connection's bounded queue drains, so its memory stays put while
//! the subscriber falls behind; it closes the connection with a reason, and
//! the subscriber resumes from its last seq without a gap.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Child;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald::{Bus, OutgoingMessage, Subject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const MESSAGES: u64 = 16_384;
const PAYLOAD: usize = 8 * 1024;

/// A memory figure of a process from /proc (`VmRSS`, `VmHWM`), in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn metric(addr: &str, name: &str) -> f64 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let line = response.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

fn serve(data: &std::path::Path) -> (Child, String, std::sync::mpsc::Receiver<String>) {
    let mut command = common::herald();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--outbound-buffer", "64", "--slow-consumer-timeout-ms", "300"]);
    let (child, url, log) = common::serve_logged(command);
    let addr = url.trim_start_matches("ws://").trim_end_matches("/v1/ws").to_owned();
    (child, addr, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_while_server_memory_stays_bounded() {
    let data = tempfile::tempdir().unwrap();
    let bus = Bus::open(data.path()).await.unwrap();
    for batch in 0..MESSAGES / 256 {
        let messages = (0..256)
            .map(|i| {
                let n = batch * 256 + i;
                let mut payload = format!("{n:08}").into_bytes();
                payload.resize(PAYLOAD, b'x');
                OutgoingMessage::new(Subject::new("bulk.data").unwrap(), payload)
            })
            .collect();
        bus.publish_batch(messages).await.unwrap();
    }
    tokio::task::spawn_blocking(move || drop(bus)).await.unwrap();

    let (mut server, addr, log) = serve(data.path());
    let pid = server.id();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .unwrap();
    let baseline = memory_kib(pid, "VmRSS:");
    let subscribe = r#"{"id": 1, "op": "subscribe", "sub": 1, "pattern": "bulk.>", "from": {"seq": 1}}"#;
    socket.send(Message::Text(subscribe.into())).await.unwrap();
    // Read nothing until the server has given up on this subscriber.
    let mut waited = 0;
    while metric(&addr, "herald_slow_consumer_disconnects_total").await < 1.0 {
        waited += 1;
        assert!(waited < 3000, "the slow subscriber was never disconnected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let peak = memory_kib(pid, "VmHWM:");
    // The operator is told, naming the connection.
    let warning = common::expect_line(&log, "slow consumer disconnected", Duration::from_secs(10));
    assert!(
        warning.contains(" WARN ") && warning.contains("peer=127.0.0.1:"),
        "{warning}"
    );
    let stream_mib = MESSAGES * PAYLOAD as u64 / (1024 * 1024);
    eprintln!(
        "server RSS {} MiB before the slow subscriber, peak {} MiB by its disconnect; the stream holds {stream_mib} MiB",
        baseline / 1024,
        peak / 1024
    );
    assert!(
        peak.saturating_sub(baseline) < 48 * 1024,
        "server memory grew by {} MiB for a subscriber that read nothing",
        peak.saturating_sub(baseline) / 1024
    );

    // What was queued is still delivered, in order, then the reason and the close.
    let mut last = 0;
    let mut reason = None;
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Text(text) => {
                let frame: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if frame["type"] == "message" {
                    let seq = frame["message"]["seq"].as_u64().unwrap();
                    assert_eq!(seq, last + 1, "in order, no gap");
                    last = seq;
                }
            }
            Message::Close(Some(close)) => reason = Some(close.reason.to_string()),
            _ => {}
        }
    }
    assert!(reason.unwrap().contains("slow consumer"));
    assert!(last < MESSAGES, "disconnected before the end");

    // Resumed from the next seq, reading promptly: everything else arrives once.
    let remote = Bus::connect(format!("ws://{addr}/v1/ws")).await.unwrap();
    let mut resumed = remote
        .subscribe_from("bulk.>", herald::ReadFrom::Seq(last + 1))
        .await
        .unwrap();
    while last < MESSAGES {
        let message = resumed.next().await.unwrap();
        assert_eq!(message.seq, last + 1, "no gap, no repeat");
        assert_eq!(&message.payload[..8], format!("{:08}", message.seq - 1).as_bytes());
        last = message.seq;
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
