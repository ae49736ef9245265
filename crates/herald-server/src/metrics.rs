//! `/metrics`: the server's counters and every consumer's lag, in the
//! Prometheus text format.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_core::{Backend, ErrorKind, Message, Result};

use crate::AppState;
use crate::auth::{Action, Caller};

/// Counters shared by every session and handler.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    published_messages: AtomicU64,
    published_bytes: AtomicU64,
    delivered_messages: AtomicU64,
    delivered_bytes: AtomicU64,
    connections_open: AtomicU64,
    connections_total: AtomicU64,
    slow_consumer_disconnects: AtomicU64,
    connections_refused: AtomicU64,
    connections_timed_out: AtomicU64,
}

impl Metrics {
    /// Counts messages published (acknowledged), with their payload bytes.
    pub(crate) fn published(&self, messages: u64, bytes: u64) {
        self.published_messages.fetch_add(messages, Ordering::Relaxed);
        self.published_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts one message sent to a subscriber, a consumer or a tail.
    pub(crate) fn delivered(&self, message: &Message) {
        self.delivered_messages.fetch_add(1, Ordering::Relaxed);
        self.delivered_bytes
            .fetch_add(message.payload.len() as u64, Ordering::Relaxed);
    }

    /// A WebSocket session opened; the guard counts it closed when dropped.
    pub(crate) fn connected(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        self.connections_total.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard(self.clone())
    }

    /// A session was closed for reading too slowly.
    /// A connection was refused for being over a connection limit.
    pub(crate) fn refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was closed for a header or idle timeout.
    pub(crate) fn timed_out(&self) {
        self.connections_timed_out.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn slow_consumer(&self) {
        self.slow_consumer_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition: counters, then streams and consumers as the backend sees them now.
    async fn render(&self, backend: &Arc<dyn Backend>) -> Result<String> {
        let mut out = String::new();
        let counters = [
            (
                "herald_published_messages_total",
                "Messages published and acknowledged through this server.",
                &self.published_messages,
            ),
            (
                "herald_published_bytes_total",
                "Payload bytes published through this server.",
                &self.published_bytes,
            ),
            (
                "herald_delivered_messages_total",
                "Messages sent to subscribers, consumers and tails.",
                &self.delivered_messages,
            ),
            (
                "herald_delivered_bytes_total",
                "Payload bytes sent to subscribers, consumers and tails.",
                &self.delivered_bytes,
            ),
            (
                "herald_connections_total",
                "WebSocket sessions accepted.",
                &self.connections_total,
            ),
            (
                "herald_slow_consumer_disconnects_total",
                "Sessions closed because their reader fell behind its outbound queue.",
                &self.slow_consumer_disconnects,
            ),
            (
                "herald_connections_refused_total",
                "Connections closed as accepted for being over a connection limit.",
                &self.connections_refused,
            ),
            (
                "herald_connections_timed_out_total",
                "Connections closed for a request's headers arriving too slowly, or for idling too long.",
                &self.connections_timed_out,
            ),
        ];
        for (name, help, value) in counters {
            family(&mut out, name, help, "counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        family(&mut out, "herald_connections", "WebSocket sessions open now.", "gauge");
        let _ = writeln!(
            out,
            "herald_connections {}",
            self.connections_open.load(Ordering::Relaxed)
        );

        let streams = backend.list_streams().await?;
        let mut consumers = Vec::new();
        for stream in &streams {
            match backend.list_consumers(&stream.config.name).await {
                Ok(found) => consumers.extend(found),
                // Deleted between the two calls: it has no consumers to report.
                Err(err) if err.kind() == ErrorKind::StreamNotFound => {}
                Err(err) => return Err(err),
            }
        }
        let stream_gauges: [StreamGauge; 2] = [
            ("herald_stream_messages", "Messages stored in a stream.", |s| {
                s.state.messages
            }),
            ("herald_stream_bytes", "Bytes stored in a stream.", |s| s.state.bytes),
        ];
        for (name, help, value) in stream_gauges {
            family(&mut out, name, help, "gauge");
            for s in &streams {
                let stream = escape(s.config.name.as_str());
                let _ = writeln!(out, "{name}{{stream=\"{stream}\"}} {}", value(s));
            }
        }
        let gauges: [ConsumerGauge; 4] = [
            (
                "herald_consumer_lag_messages",
                "Matching messages after the consumer's ack floor not yet acked.",
                |c| c.pending.to_string(),
            ),
            (
                "herald_consumer_lag_seconds",
                "Age of the consumer's oldest unacked message (0 when none).",
                |c| c.oldest_unacked_age.unwrap_or_default().as_secs_f64().to_string(),
            ),
            (
                "herald_consumer_in_flight",
                "Deliveries leased and not yet settled.",
                |c| c.in_flight.to_string(),
            ),
            (
                "herald_consumer_dead_lettered",
                "Messages the consumer gave up on.",
                |c| c.dead_lettered.to_string(),
            ),
        ];
        for (name, help, value) in gauges {
            family(&mut out, name, help, "gauge");
            for c in &consumers {
                let _ = writeln!(
                    out,
                    "{name}{{stream=\"{}\",consumer=\"{}\"}} {}",
                    escape(c.stream.as_str()),
                    escape(c.config.name.as_str()),
                    value(c)
                );
            }
        }
        Ok(out)
    }
}

/// A per-stream gauge: its name, its help and how to read it off the info.
type StreamGauge = (&'static str, &'static str, fn(&herald_core::StreamInfo) -> u64);

/// A per-consumer gauge: its name, its help and how to read it off the info.
type ConsumerGauge = (&'static str, &'static str, fn(&herald_core::ConsumerInfo) -> String);

/// Counts a session closed when dropped.
pub(crate) struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `GET /metrics`.
pub(crate) async fn handler(State(state): State<AppState>, caller: Caller) -> Response {
    if let Err(err) = caller.check(&state.backend, Action::Admin).await {
        return crate::http_error(&err);
    }
    match state.metrics.render(&state.backend).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(err) => crate::http_error(&err),
    }
}
