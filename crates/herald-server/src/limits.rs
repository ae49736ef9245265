//! [`Limits`]: what one server holds at most, and how long it waits.

/// The server's limits. Defaults: 1 MiB payloads, 1,024 connections (no
/// limit per peer address or per token), 16 KiB for a request's head (its request line
/// and headers), 10 s for a request's headers, 60 s of silence
/// between requests, 1,024 subscriptions and responders per connection, 256
/// operations in flight per connection, 4,096 frames and 16 MiB queued per
/// connection, and 5 s for a subscriber to make room in a full queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// The largest payload a publish may carry, in bytes (streams may set lower).
    pub max_payload: usize,
    /// Connections open at once, HTTP and WebSocket together, at most: past
    /// it, [`Server::serve`](crate::Server::serve) closes a new connection as it accepts it (and
    /// counts it in `/metrics`). A router nested in an app limits WebSocket
    /// sessions to this many (503 past it); the app's server owns its
    /// connections.
    pub max_connections: usize,
    /// Connections open at once from one peer address, at most; `None`: only
    /// `max_connections` applies. Behind a proxy every client shares its
    /// address, so set this only where clients connect directly.
    pub max_connections_per_peer: Option<std::num::NonZeroUsize>,
    /// WebSocket sessions and live tails (`/v1/tail`) open at once with one
    /// access token, at most; `None`: no limit per token. Past it the
    /// upgrade or the tail is answered 429 with the error object (1004), and
    /// the others of that token go on. Without access tokens it does not
    /// apply.
    pub max_connections_per_token: Option<std::num::NonZeroUsize>,
    /// How long a request's headers may take to arrive, from its first byte
    /// (or, for a new connection's first request, from the accept): a
    /// connection that sends half a request, or nothing, is closed after it.
    pub header_read_timeout: std::time::Duration,
    /// The largest request head [`Server::serve`](crate::Server::serve) reads, in bytes: the
    /// request line and every header together (and at most 100 headers).
    /// A bigger one is answered 431 with the error object (1006) and its
    /// connection closed. A raw publish carries its message headers here, so
    /// larger message headers go in a JSON publish.
    pub max_header_bytes: usize,
    /// How long a connection may stay silent between requests before it is
    /// closed. A request in hand (a long poll, an SSE tail) is never idle,
    /// except while its body is still arriving: a body that stops arriving
    /// for this long closes the connection too. WebSocket sessions are not
    /// subject to it.
    pub idle_timeout: std::time::Duration,
    /// Live subscriptions plus responders per connection at most.
    pub max_subscriptions: usize,
    /// Operations one connection may have started and not yet answered;
    /// the server reads its next frame once one is answered.
    pub max_in_flight: usize,
    /// Frames queued for one connection's socket, so a slow reader never
    /// grows the server's memory.
    pub outbound_buffer: usize,
    /// Bytes of frames queued for one connection's socket, at most (a frame
    /// bigger than this waits for an empty queue).
    pub outbound_bytes: usize,
    /// A subscriber whose queue stays full this long is disconnected with a
    /// reason frame (the log is durable: it resumes from its seq).
    pub slow_consumer_timeout: std::time::Duration,
}

/// 16 KiB: room for a bearer token, cookies a browser adds and a raw
/// publish's message headers, far from what a client that sends 64 KiB of
/// headers could be up to.
const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// 1 KiB: a request line and a token always fit.
const MIN_MAX_HEADER_BYTES: usize = 1024;

/// 256 KiB: under hyper's own read buffer (about 400 KiB), so that this
/// limit, not hyper's, is the one that refuses.
const MAX_MAX_HEADER_BYTES: usize = 256 * 1024;

/// The most permits a tokio semaphore (and so a bounded channel) can hold:
/// connections, operations in flight and queued frames are counted in them.
const MAX_PERMITS: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// 4 GiB, or less where a semaphore cannot count that far (512 MiB on a
/// 32-bit target): a connection's queued bytes are counted in `u32` permits.
const MAX_OUTBOUND_BYTES: usize = if (u32::MAX as usize) < MAX_PERMITS {
    u32::MAX as usize
} else {
    MAX_PERMITS
};

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_payload: 1024 * 1024,
            max_connections: 1024,
            max_connections_per_peer: None,
            max_connections_per_token: None,
            header_read_timeout: std::time::Duration::from_secs(10),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            idle_timeout: std::time::Duration::from_secs(60),
            max_subscriptions: 1024,
            max_in_flight: 256,
            outbound_buffer: 4096,
            outbound_bytes: 16 * 1024 * 1024,
            slow_consumer_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// Sets [`max_payload`](Limits::max_payload).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`max_connections`](Limits::max_connections).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`max_connections_per_peer`](Limits::max_connections_per_peer).
    pub fn max_connections_per_peer(mut self, n: Option<std::num::NonZeroUsize>) -> Self {
        self.max_connections_per_peer = n;
        self
    }

    /// Sets [`max_connections_per_token`](Limits::max_connections_per_token).
    pub fn max_connections_per_token(mut self, n: Option<std::num::NonZeroUsize>) -> Self {
        self.max_connections_per_token = n;
        self
    }

    /// Sets [`header_read_timeout`](Limits::header_read_timeout); `Duration::MAX` (or any timeout
    /// too long for the clock to reach) never fires.
    pub fn header_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`max_header_bytes`](Limits::max_header_bytes) (at least 1 KiB,
    /// at most 256 KiB: hyper reads no more than about 400 KiB whatever is
    /// set).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.clamp(MIN_MAX_HEADER_BYTES, MAX_MAX_HEADER_BYTES);
        self
    }

    /// Sets [`idle_timeout`](Limits::idle_timeout); `Duration::MAX` (or any timeout
    /// too long for the clock to reach) never fires.
    pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`max_subscriptions`](Limits::max_subscriptions).
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = n;
        self
    }

    /// Sets [`slow_consumer_timeout`](Limits::slow_consumer_timeout).
    pub fn slow_consumer_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.slow_consumer_timeout = timeout;
        self
    }

    /// Sets [`outbound_buffer`](Limits::outbound_buffer) (at least 1).
    pub fn outbound_buffer(mut self, frames: usize) -> Self {
        self.outbound_buffer = frames.max(1);
        self
    }

    /// Sets [`outbound_bytes`](Limits::outbound_bytes) (at least 1, at most
    /// 4 GiB, or 512 MiB on a 32-bit target).
    pub fn outbound_bytes(mut self, bytes: usize) -> Self {
        self.outbound_bytes = bytes.clamp(1, MAX_OUTBOUND_BYTES);
        self
    }

    /// Sets [`max_in_flight`](Limits::max_in_flight) (at least 1).
    pub fn max_in_flight(mut self, operations: usize) -> Self {
        self.max_in_flight = operations.max(1);
        self
    }

    /// Checks that the server can run with these limits: `max_connections`,
    /// `max_in_flight` and `outbound_buffer` from 1 to
    /// [`tokio::sync::Semaphore::MAX_PERMITS`] (each is counted by a
    /// semaphore or a bounded channel), `outbound_bytes` from 1 to 4 GiB (512
    /// MiB on a 32-bit target) and `max_header_bytes` from 1 KiB to 256 KiB.
    /// The setters keep most fields in range; a field set directly may not
    /// be. [`Server::limits`](crate::Server::limits) calls it.
    ///
    /// Timeouts have no upper bound: one too long for the clock to reach
    /// (`Duration::MAX`) never fires.
    ///
    /// # Errors
    ///
    /// The first field out of its range, with the range.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut limits = herald_server::Limits::default();
    /// assert!(limits.validate().is_ok());
    /// limits.outbound_buffer = 0;
    /// let refused = limits.validate().unwrap_err();
    /// assert_eq!(refused.field(), "outbound_buffer");
    /// assert_eq!(*refused.range().start(), 1);
    /// ```
    pub fn validate(&self) -> Result<(), InvalidLimit> {
        let ranges = [
            ("max_connections", self.max_connections, 1, MAX_PERMITS),
            ("max_in_flight", self.max_in_flight, 1, MAX_PERMITS),
            ("outbound_buffer", self.outbound_buffer, 1, MAX_PERMITS),
            ("outbound_bytes", self.outbound_bytes, 1, MAX_OUTBOUND_BYTES),
            (
                "max_header_bytes",
                self.max_header_bytes,
                MIN_MAX_HEADER_BYTES,
                MAX_MAX_HEADER_BYTES,
            ),
        ];
        for (field, value, least, most) in ranges {
            if !(least..=most).contains(&value) {
                return Err(InvalidLimit {
                    field,
                    value,
                    range: least..=most,
                });
            }
        }
        Ok(())
    }
}

/// A [`Limits`] field out of the range the server can run with (see
/// [`Limits::validate`]). As a [`herald_core::Error`] it is of kind
/// [`InvalidConfig`](herald_core::ErrorKind::InvalidConfig).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit `{field}` is {value}; it must be from {} to {}", range.start(), range.end())]
pub struct InvalidLimit {
    field: &'static str,
    value: usize,
    range: std::ops::RangeInclusive<usize>,
}

impl InvalidLimit {
    /// The field of [`Limits`] out of range, as it is named there
    /// (`"max_connections"`).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The value it had.
    pub fn value(&self) -> usize {
        self.value
    }

    /// The values it may have.
    pub fn range(&self) -> std::ops::RangeInclusive<usize> {
        self.range.clone()
    }
}

impl From<InvalidLimit> for herald_core::Error {
    fn from(invalid: InvalidLimit) -> herald_core::Error {
        herald_core::Error::new(herald_core::ErrorKind::InvalidConfig, invalid.to_string()).with_source(invalid)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Limits, MAX_PERMITS};

    /// Sets one field out of range.
    type Breaks = fn(&mut Limits);

    #[test]
    fn the_defaults_and_the_setters_bounds_are_valid() {
        Limits::default().validate().unwrap();
        let largest = Limits::default()
            .max_connections(MAX_PERMITS)
            .max_in_flight(MAX_PERMITS)
            .outbound_buffer(MAX_PERMITS)
            .outbound_bytes(usize::MAX)
            .max_header_bytes(usize::MAX);
        largest.validate().unwrap();
        let smallest = Limits::default()
            .max_connections(1)
            .max_in_flight(0)
            .outbound_buffer(0)
            .outbound_bytes(0)
            .max_header_bytes(0);
        smallest.validate().unwrap();
        // What tokio can count, it can make: these are the limits' own sizes.
        let _places = tokio::sync::Semaphore::new(largest.max_connections);
        let (_frames, _queue) = tokio::sync::mpsc::channel::<()>(largest.outbound_buffer);
    }

    #[test]
    fn a_count_past_what_tokio_can_hold_is_refused_naming_its_field_and_range() {
        let past = MAX_PERMITS + 1;
        let cases: [(&str, Breaks); 3] = [
            ("max_connections", |l| l.max_connections = MAX_PERMITS + 1),
            ("max_in_flight", |l| l.max_in_flight = MAX_PERMITS + 1),
            ("outbound_buffer", |l| l.outbound_buffer = MAX_PERMITS + 1),
        ];
        for (field, set) in cases {
            let mut limits = Limits::default();
            set(&mut limits);
            let refused = limits.validate().unwrap_err();
            assert_eq!(
                (refused.field(), refused.value(), refused.range()),
                (field, past, 1..=MAX_PERMITS)
            );
            assert_eq!(
                refused.to_string(),
                format!("limit `{field}` is {past}; it must be from 1 to {MAX_PERMITS}")
            );
            let error = herald_core::Error::from(refused);
            assert_eq!(error.kind(), herald_core::ErrorKind::InvalidConfig);
            assert!(error.message().contains(field), "{error}");
        }
    }

    #[test]
    fn zero_frames_operations_bytes_or_connections_are_refused() {
        let cases: [(&str, Breaks); 4] = [
            ("max_connections", |l| l.max_connections = 0),
            ("max_in_flight", |l| l.max_in_flight = 0),
            ("outbound_buffer", |l| l.outbound_buffer = 0),
            ("outbound_bytes", |l| l.outbound_bytes = 0),
        ];
        for (field, set) in cases {
            let mut limits = Limits::default();
            set(&mut limits);
            let refused = limits.validate().unwrap_err();
            assert_eq!((refused.field(), refused.value()), (field, 0));
        }
        let limits = Limits {
            max_header_bytes: 1 << 30,
            ..Limits::default()
        };
        assert_eq!(limits.validate().unwrap_err().field(), "max_header_bytes");
    }
}
