//! A full disk under `herald serve`'s server: the client is told the server
//! could not write (a typed error object, nothing of the disk's words), and the
//! operator's log carries the whole cause, down to the operating system's
//! `ENOSPC`, in one line.

// Test code: an unwrap that fails is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use herald::{Bus, Engine, StreamConfig};
use herald_testkit::faulty_storage::FaultyStorage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the log subscriber wrote.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One HTTP/1.1 request on its own connection; the status and the body.
async fn post(addr: std::net::SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

// The server's tasks run on this thread (current-thread runtime), so a
// subscriber set for it sees what they log.
#[tokio::test]
async fn a_full_disk_is_a_typed_error_for_the_client_and_its_cause_in_the_log() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let disk = FaultyStorage::new();
    let bus = Bus::from_engine(Engine::builder().storage_backend(disk.clone()).open().unwrap());
    bus.create_stream(StreamConfig::new("orders").unwrap()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(herald_server::Server::new(bus.clone()).serve(listener, std::future::pending()));

    let (status, _) = post(
        addr,
        "/v1/messages",
        r#"{"subject": "orders.new", "payload": "before"}"#,
    )
    .await;
    assert_eq!(status, 200);
    disk.fill_after(0);
    let (status, body) = post(
        addr,
        "/v1/messages",
        r#"{"subject": "orders.new", "payload": "refused"}"#,
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(
        (&body["kind"], &body["code"]),
        (&"storage".into(), &5001.into()),
        "{body}"
    );
    let told = body["message"].as_str().unwrap();
    assert!(
        told.contains("details are in its log") && !told.contains("space"),
        "{told}"
    );

    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("ERROR") && l.contains("kind=Storage"))
        .unwrap_or_else(|| panic!("no storage error logged:\n{log}"));
    println!("the log line: {line}");
    assert!(line.contains("No space left on device (os error 28)"), "{line}");
    assert!(!line.contains("refused"), "a payload reached the log: {line}");
}
