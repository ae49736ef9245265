//! `herald serve` killed with SIGKILL, again and again, under 32 concurrent
//! publishers publishing with message ids: 16 over WebSocket (2 connections
//! of 8) and 16 over HTTP (`POST /v1/messages`). Every publish is retried
//! until acknowledged (the WebSocket client reconnects and repeats it under
//! its id; an HTTP publisher posts it again). Afterwards every acknowledged
//! message is stored, at the seq its ack named, and no id is stored twice.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::{Bus, OutgoingMessage, Subject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONNECTIONS: usize = 2;
const PUBLISHERS_PER_CONNECTION: usize = 8;
const HTTP_PUBLISHERS: usize = 16;

fn kills() -> usize {
    std::env::var("HERALD_SERVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_survives_repeated_sigkill_once() {
    let data = tempfile::tempdir().unwrap();
    let (mut server, url) = common::serve(data.path(), [] as [&str; 0]);
    let listen = url.trim_start_matches("ws://").trim_end_matches("/v1/ws").to_owned();
    let done = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for c in 0..CONNECTIONS {
        let bus = Bus::connect(url.as_str()).await.unwrap();
        for p in 0..PUBLISHERS_PER_CONNECTION {
            let (bus, done, acked) = (bus.clone(), done.clone(), acked.clone());
            publishers.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let id = format!("c{c}-p{p}-m{i}");
                    let subject = Subject::new(format!("kill.c{c}")).unwrap();
                    let message = OutgoingMessage::new(subject, id.clone()).id(id.clone());
                    let started = Instant::now();
                    let ack = loop {
                        match bus.publish_message(message.clone()).await {
                            Ok(ack) => break ack,
                            Err(err) => {
                                assert!(started.elapsed() < Duration::from_secs(60), "{id}: {err}");
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    };
                    acked.fetch_add(1, Ordering::Relaxed);
                    acks.push((id, ack.seq));
                    i += 1;
                }
                acks
            }));
        }
    }
    for p in 0..HTTP_PUBLISHERS {
        let (listen, done, acked) = (listen.clone(), done.clone(), acked.clone());
        publishers.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                let id = format!("h{p}-m{i}");
                let body = serde_json::json!({"subject": "kill.http", "payload": id, "id": id}).to_string();
                let started = Instant::now();
                let seq = loop {
                    match post(&listen, "/v1/messages", &body).await {
                        Ok(seq) => break seq,
                        Err(err) => {
                            assert!(started.elapsed() < Duration::from_secs(60), "{id}: {err}");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                };
                acked.fetch_add(1, Ordering::Relaxed);
                acks.push((id, seq));
                i += 1;
            }
            acks
        }));
    }
    let kills = kills();
    for round in 0..kills {
        // Let some publishes through, then kill mid-stream.
        let before = acked.load(Ordering::Relaxed);
        let waited = Instant::now();
        while acked.load(Ordering::Relaxed) < before + 50 && waited.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(fastrand_ms(round))).await;
        server.kill().unwrap();
        server.wait().unwrap();
        server = common::serve_on(data.path(), &listen, [] as [&str; 0]).0;
    }
    done.store(true, Ordering::Relaxed);
    let mut acks = Vec::new();
    for publisher in publishers {
        acks.extend(publisher.await.unwrap());
    }
    // Read everything back through the server.
    let bus = Bus::connect(url.as_str()).await.unwrap();
    let stored = bus
        .read("kill", herald::ReadRange::from_seq(1, 10_000_000))
        .await
        .unwrap();
    let mut by_id: HashMap<String, u64> = HashMap::new();
    for message in &stored {
        assert!(
            by_id.insert(message.id.clone(), message.seq).is_none(),
            "{} is stored twice",
            message.id
        );
    }
    for (id, seq) in &acks {
        assert_eq!(by_id.get(id), Some(seq), "{id} was acknowledged at {seq}");
    }
    eprintln!(
        "{kills} kills; {} publishes acknowledged by 32 publishers ({} over HTTP), {} stored, each once",
        acks.len(),
        acks.iter().filter(|(id, _)| id.starts_with('h')).count(),
        stored.len()
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Posts a JSON message; the seq of its ack, or why not (the server is down,
/// the connection was cut, or the server answered with an error).
async fn post(addr: &str, path: &str, body: &str) -> Result<u64, String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or("a cut response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.1 201") {
        return Err(format!("answered {head}"));
    }
    let ack: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    ack["seq"].as_u64().ok_or_else(|| format!("no seq in {body}"))
}

/// A pause of 0–20 ms before a kill, varied by round.
fn fastrand_ms(round: usize) -> u64 {
    (round as u64 * 7919) % 21
}
