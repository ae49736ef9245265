//! One WebSocket connection at a time: its writer and reader tasks, and the
//! reconnect that replaces it when it drops.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use herald_core::wire::{ClientFrame, Op, ServerFrame};
use herald_core::{Error, ErrorKind, Result};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::{ConnectOptions, Incoming, Inner, lock};

const FIRST_RETRY: Duration = Duration::from_millis(10);
const LAST_RETRY: Duration = Duration::from_secs(2);

/// A connection's byte stream: plain TCP or TLS over it.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// Opens a WebSocket as `options` say.
pub(crate) async fn open(options: &ConnectOptions) -> Result<Socket> {
    let url = options.url();
    let mut request = url
        .into_client_request()
        .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("the server URL {url}: {e}")))?;
    if let Some(token) = &options.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidRequest, "an access token is printable ASCII"))?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let uri = request.uri();
    // `connect_with` made a TLS connector for `wss://` URLs and only for them.
    let tls = options.tls.as_ref();
    // IPv6 hosts come bracketed.
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls.is_some() { 443 } else { 80 });
    let closed = |e: &dyn std::fmt::Display| Error::new(ErrorKind::Closed, format!("connecting to {url}: {e}"));
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| closed(&e))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if let Some(connector) = tls {
        let name = ServerName::try_from(host)
            .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("the host of {url}: {e}")))?;
        Box::new(connector.connect(name, tcp).await.map_err(|e| closed(&e))?)
    } else {
        Box::new(tcp)
    };
    // The server bounds what it sends (a message by its payload limit, a page
    // of messages by `wire::PAGE_BYTES` plus one chunk), and a frame refused
    // here would drop the connection and fail the same call on every resend.
    let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    match tokio_tungstenite::client_async_with_config(request, io, Some(config)).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(response)) if matches!(response.status().as_u16(), 401 | 403) => {
            let reason = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned();
            Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("{url} refused the connection ({}): {reason}", response.status()),
            ))
        }
        Err(e) => Err(closed(&e)),
    }
}

/// TLS for `wss://`: the system's roots, plus those in `ca_file`.
pub(crate) fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a private CA may be all that is needed.
    let (_, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("reading CA certificates from {}: {e}", path.display()),
                )
            })?;
        for cert in certs {
            roots.add(cert).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("a CA certificate in {}: {e}", path.display()),
                )
            })?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::Internal, format!("TLS versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)))
}

/// Makes `socket` the client's connection: restores subscriptions,
/// responders and waiting calls on it, then runs it until it drops.
pub(crate) fn attach(inner: &Arc<Inner>, socket: Socket) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut outbound) = mpsc::unbounded_channel::<ClientFrame>();
    {
        // Held while restoring, so no call slips between the snapshot and the switch.
        let mut out = lock(&inner.out);
        for frame in inner.restore() {
            let _ = tx.send(frame);
        }
        *out = Some(tx);
    }
    tokio::spawn(async move {
        while let Some(frame) = outbound.recv().await {
            let Ok(text) = serde_json::to_string(&frame) else {
                continue;
            };
            if sink.send(WsMessage::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let WsMessage::Text(text) = message else {
                continue;
            };
            let Some(inner) = weak.upgrade() else {
                return;
            };
            match serde_json::from_str::<ServerFrame>(text.as_str()) {
                Ok(frame) => dispatch(&inner, frame),
                Err(err) => tracing::warn!(%err, "an unreadable frame from the server"),
            }
        }
        let Some(inner) = weak.upgrade() else {
            return;
        };
        inner.disconnected();
        let options = inner.options.clone();
        drop(inner);
        reconnect(weak, options).await;
    });
}

/// Tries again with backoff while the client lives; calls waiting longer
/// than the options' `reconnect_wait` fail, later calls wait for the next attempt.
async fn reconnect(weak: Weak<Inner>, options: ConnectOptions) {
    let url = options.url();
    let lost_at = Instant::now();
    let mut delay = FIRST_RETRY;
    let mut gave_up = false;
    loop {
        tokio::time::sleep(delay).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        match open(&options).await {
            Ok(socket) => {
                tracing::info!(%url, "reconnected to the Herald server");
                attach(&inner, socket);
                return;
            }
            Err(err) => {
                tracing::debug!(%err, "reconnect attempt failed");
                if !gave_up && lost_at.elapsed() > options.reconnect_wait {
                    inner.give_up();
                    gave_up = true;
                }
                delay = (delay * 2).min(LAST_RETRY);
            }
        }
    }
}

/// A subscription's reader fell behind: the server stops sending it.
fn stop_sending(inner: &Inner, sub: u64) {
    tracing::debug!(
        sub,
        "a subscription's reader fell behind; it takes up again once it has read what it holds"
    );
    let id = inner.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    inner.send(ClientFrame {
        id,
        op: Op::Unsubscribe { sub },
    });
}

fn dispatch(inner: &Inner, frame: ServerFrame) {
    match frame {
        ServerFrame::Hello { .. } => {}
        ServerFrame::Ok { id, result } => inner.answer(id, Ok(result)),
        ServerFrame::Error { id: Some(id), error } => inner.answer(id, Err(Error::from(error))),
        ServerFrame::Error { id: None, error } => {
            tracing::warn!(message = %error.message, "the server could not read a frame");
        }
        ServerFrame::Message { sub, message } => {
            if let Some(behind) = inner.to_subscription(sub, message.into_message()) {
                stop_sending(inner, behind);
            }
        }
        ServerFrame::SubError { sub, error } => {
            let lagged = error.kind == ErrorKind::Lagged;
            if let Some(behind) = inner.to_subscription(sub, Err(Error::from(error))) {
                stop_sending(inner, behind);
            }
            if !lagged {
                lock(&inner.subscriptions).remove(&sub);
            }
        }
        ServerFrame::Request {
            responder,
            request,
            subject,
            headers,
            body,
        } => {
            let sender = lock(&inner.responders).get(&responder).map(|r| r.tx.clone());
            let incoming = Incoming {
                request,
                subject,
                headers,
                body,
            };
            if sender.is_none_or(|s| s.try_send(incoming).is_err()) {
                // Nobody here serves it any more, or its responder has more
                // waiting than it holds: let the requester know now.
                let id = inner.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                inner.send(ClientFrame {
                    id,
                    op: Op::Respond { request, reply: None },
                });
            }
        }
    }
}
