//! Helpers shared by the server's tests: a server on 127.0.0.1:0 and a
//! small HTTP/1.1 client (one request per connection), so the tests need no
//! HTTP client crate.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server for `server` on a free loopback port; its address.
pub async fn start(server: herald_server::Server) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    addr
}

/// An HTTP response: status, headers (names lowercased) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413, say) before reading the whole body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    parse(&raw)
}

/// `GET path`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", path, headers, b"").await
}

/// A JSON request.
pub async fn send_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Response {
    let mut all = headers.to_vec();
    all.push(("content-type", "application/json"));
    request(addr, method, path, &all, body.to_string().as_bytes()).await
}

fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Response { status, headers, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        body.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    body
}

/// Sends a request head declaring `content-length: length` and no body, and
/// reads the response: what a server that refuses early answers.
pub async fn request_head_only(addr: SocketAddr, method: &str, path: &str, length: u64) -> Response {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    parse(&raw)
}

/// Sends `body` in chunks of `chunk` bytes (no declared length) while reading
/// the response, so a server that stops reading part way can still be heard.
pub async fn request_chunked(addr: SocketAddr, method: &str, path: &str, body: Vec<u8>, chunk: usize) -> Response {
    request_chunked_with(addr, method, path, &[], body, chunk).await
}

/// [`request_chunked`] with more headers.
pub async fn request_chunked_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    chunk: usize,
) -> Response {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ntransfer-encoding: chunked\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let sender = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        for part in body.chunks(chunk) {
            writer.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await?;
            writer.write_all(part).await?;
            writer.write_all(b"\r\n").await?;
        }
        writer.write_all(b"0\r\n\r\n").await?;
        std::io::Result::Ok(writer)
    });
    let mut raw = Vec::new();
    let _ = reader.read_to_end(&mut raw).await;
    // The writer may have failed once the server stopped reading: that is the point.
    let _ = sender.await;
    parse(&raw)
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

impl Event {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.data))
    }
}

/// A response of server-sent events, read as they arrive.
pub struct EventStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: tokio::io::BufReader<tokio::net::TcpStream>,
    /// Body text received and not yet split into events.
    text: String,
    /// The non-event body of an error answer.
    pub body: Vec<u8>,
}

/// Opens `GET path` and reads the response head; the events follow with
/// [`EventStream::next`]. The subscription exists once this returns.
pub async fn events(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> EventStream {
    events_with_buffer(addr, path, headers, None).await
}

/// [`events`] on a socket whose receive buffer is fixed at `recv_buffer`
/// bytes (no autotuning), so that a reader that stops reading is felt by the
/// server soon.
pub async fn events_with_buffer(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    recv_buffer: Option<u32>,
) -> EventStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let mut stream = socket.connect(addr).await.unwrap();
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\naccept: text/event-stream\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reader = tokio::io::BufReader::new(stream);
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n\r\n") {
        let mut line = Vec::new();
        let n = tokio::io::AsyncBufReadExt::read_until(&mut reader, b'\n', &mut line)
            .await
            .unwrap();
        assert!(
            n > 0,
            "connection closed in the response head: {}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&line);
    }
    let head = parse(&raw);
    let mut stream = EventStream {
        status: head.status,
        headers: head.headers,
        reader,
        text: String::new(),
        body: Vec::new(),
    };
    if stream.status != 200 {
        // An error answer: read its (chunked or sized) body whole.
        let mut rest = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream.reader, &mut rest).await;
        let mut all = raw.clone();
        all.extend_from_slice(&rest);
        stream.body = parse(&all).body;
    }
    stream
}

impl EventStream {
    /// The error body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The next event (keep-alive comments skipped), or `None` when the
    /// server ends the stream.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return Some(event);
                }
                continue;
            }
            let chunk = self.next_chunk().await?;
            self.text.push_str(&String::from_utf8(chunk).unwrap());
        }
    }

    /// The next event, failing the test if none comes within 10 s.
    pub async fn expect(&mut self) -> Event {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
    }

    /// One chunk of the chunked body; `None` at its end.
    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        use tokio::io::AsyncBufReadExt;
        let mut size = String::new();
        if self.reader.read_line(&mut size).await.ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return None;
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).await.ok()?;
        chunk.truncate(size);
        Some(chunk)
    }
}

fn parse_event(block: &str) -> Option<Event> {
    let mut event = Event {
        event: "message".to_owned(),
        id: None,
        data: String::new(),
    };
    let mut has_data = false;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_owned(),
            "id" => event.id = Some(value.to_owned()),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            // A comment (keep-alive) or a field we do not use.
            _ => {}
        }
    }
    has_data.then_some(event)
}

/// A WebSocket client of the protocol, for tests that speak it by hand.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `ws://{addr}/v1/ws` (TCP_NODELAY on the client's side, so
/// only the server's sockets are measured) and reads the hello.
pub async fn ws_connect(addr: SocketAddr) -> Socket {
    let url = format!("ws://{addr}/v1/ws");
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .unwrap();
    assert_eq!(ws_next(&mut socket).await["type"], "hello");
    socket
}

/// The next text frame, as JSON.
pub async fn ws_next(socket: &mut Socket) -> serde_json::Value {
    use futures_util::StreamExt;
    loop {
        match socket.next().await.unwrap().unwrap() {
            tokio_tungstenite::tungstenite::Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            _ => continue,
        }
    }
}

/// Sends `frame`.
pub async fn ws_send(socket: &mut Socket, frame: &serde_json::Value) {
    use futures_util::SinkExt;
    let text = tokio_tungstenite::tungstenite::Message::Text(frame.to_string().into());
    socket.send(text).await.unwrap();
}

/// Sends `frame` and reads the next frame.
pub async fn ws_call(socket: &mut Socket, frame: &serde_json::Value) -> serde_json::Value {
    ws_send(socket, frame).await;
    ws_next(socket).await
}

/// A JSON request the server's handler has in hand: sent with `Expect:
/// 100-continue`, its body only once the server asks for it (the handler
/// reading its body), so a test can act knowing the handler runs. Read the
/// answer with [`InHand::response`].
pub struct InHand(tokio::net::TcpStream);

impl InHand {
    pub async fn send(addr: SocketAddr, method: &str, path: &str, body: &serde_json::Value) -> InHand {
        let body = body.to_string();
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nexpect: 100-continue\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut interim = Vec::new();
        while !interim.ends_with(b"\r\n\r\n") {
            interim.push(stream.read_u8().await.unwrap());
        }
        assert!(
            interim.starts_with(b"HTTP/1.1 100"),
            "{}",
            String::from_utf8_lossy(&interim)
        );
        stream.write_all(body.as_bytes()).await.unwrap();
        InHand(stream)
    }

    /// The whole answer, once the server closes the connection.
    pub async fn response(mut self) -> Response {
        let mut raw = Vec::new();
        let _ = self.0.read_to_end(&mut raw).await;
        parse(&raw)
    }
}
