//! The accept loop of [`Server::serve`](crate::Server::serve). Every accepted
//! socket counts against the connection limits (all connections, and
//! optionally those of one peer address) and is refused at once past them;
//! it is watched, so that a request whose headers do not arrive in time, a
//! request whose body stops arriving, or a connection silent between
//! requests for too long, is closed; and it is
//! served by hyper, with upgrades for WebSocket sessions, until it closes or
//! the server stops. A request hyper cannot read is answered with the error
//! object all the same ([`crate::unparsed`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::time::Instant;
use tower_service::Service;

use crate::metrics::Metrics;
use crate::{Limits, lock};

/// How long a connection may take to finish the request in hand once the
/// server stops: answers are quick, and the waits that are not (fetches,
/// tails) end at once on a stop, so only a client that stalls mid-request
/// (a body that never comes) meets it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections from `listener` and serves `app` on them until `stop`
/// turns true; then it stops accepting, lets each connection finish the
/// request in hand, and returns once every connection has closed.
pub(crate) async fn serve<L>(
    mut listener: L,
    app: Router,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) where
    L: Listener<Addr = SocketAddr>,
{
    let admission = Admission::new(&limits);
    let (open, mut closed) = mpsc::channel::<()>(1);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let Some(pass) = admission.admit(peer.ip()) else {
            // Refused cheaply: the socket is closed before anything is read.
            metrics.refused();
            tracing::debug!(%peer, "connection refused: over the connection limit");
            continue;
        };
        let conn = Connection {
            app: app.clone(),
            limits: limits.clone(),
            metrics: metrics.clone(),
            stop: stop.clone(),
            _open: open.clone(),
        };
        tokio::spawn(conn.run(io, pass, peer));
    }
    drop(listener);
    drop(open);
    // Every connection task holds a sender: all gone, all closed.
    let _ = closed.recv().await;
}

/// Connections open per peer address.
type PeerCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The connection limits: a place for every connection, and a count per
/// peer address when that is limited too.
struct Admission {
    places: Arc<Semaphore>,
    per_peer: Option<(usize, PeerCounts)>,
}

/// A connection's places under the limits, given back when it closes (a
/// WebSocket session keeps them for its life).
struct Pass {
    _place: OwnedSemaphorePermit,
    peer: Option<(IpAddr, PeerCounts)>,
}

impl Admission {
    fn new(limits: &Limits) -> Admission {
        Admission {
            places: Arc::new(Semaphore::new(limits.max_connections)),
            per_peer: limits.max_connections_per_peer.map(|n| (n.get(), Arc::default())),
        }
    }

    fn admit(&self, ip: IpAddr) -> Option<Pass> {
        let place = self.places.clone().try_acquire_owned().ok()?;
        let peer = match &self.per_peer {
            None => None,
            Some((most, counts)) => {
                let mut counts_now = lock(counts);
                let count = counts_now.entry(ip).or_insert(0);
                if *count >= *most {
                    return None;
                }
                *count += 1;
                Some((ip, counts.clone()))
            }
        };
        Some(Pass { _place: place, peer })
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some((ip, counts)) = &self.peer {
            let mut counts = lock(counts);
            if let Some(count) = counts.get_mut(ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(ip);
                }
            }
        }
    }
}

/// One accepted connection and what it needs to be served.
struct Connection {
    app: Router,
    limits: Arc<Limits>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    /// Held until the connection closes, so `serve` can wait for it.
    _open: mpsc::Sender<()>,
}

impl Connection {
    async fn run<I>(mut self, io: I, pass: Pass, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let clock = Arc::new(Watch::default());
        let io = Watched {
            io,
            clock: clock.clone(),
            _pass: pass,
            max_header_bytes: self.limits.max_header_bytes,
            typed_answer: None,
        };
        let app = self.app.clone();
        let serving = clock.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let mut app = app.clone();
            let guard = Serving::start(&serving);
            let arriving = serving.clone();
            // Who asked, for the log (a refused token names its peer).
            request.extensions_mut().insert(ConnectInfo(peer));
            async move {
                let response = app
                    .call(request.map(|body| Body::new(Arriving::new(body, &arriving))))
                    .await?;
                // A request is in hand until its whole answer is out (an SSE
                // tail for as long as it lasts).
                Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Tracked { body, _guard: guard })))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        // The clock below times headers and idleness; hyper's own header
        // timer would also cut keep-alive connections idle for its 30 s.
        builder.header_read_timeout(None);
        builder.max_header_size(self.limits.max_header_bytes);
        let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
        tokio::pin!(conn);
        tracing::debug!(%peer, "connection opened");
        let (header_read, idle) = (self.limits.header_read_timeout, self.limits.idle_timeout);
        let mut stopping: Option<Instant> = None;
        loop {
            let deadline = lock(&clock.clock).deadline(header_read, idle);
            tokio::select! {
                served = conn.as_mut() => {
                    match served {
                        Ok(()) => tracing::debug!(%peer, "connection closed"),
                        Err(err) => tracing::debug!(%peer, %err, "connection ended with an error"),
                    }
                    return;
                }
                // The deadline moved (a request began, or its answer went out).
                () = clock.changed.notified() => {}
                // Past its deadline (the clock may have moved since it was read: look again).
                () = sleep_until(deadline) => {
                    if let Some(why) = lock(&clock.clock).overdue(header_read, idle) {
                        self.metrics.timed_out();
                        tracing::debug!(%peer, why, "connection closed");
                        return;
                    }
                }
                _ = self.stop.wait_for(|stop| *stop), if stopping.is_none() => {
                    // The request in hand is answered; an idle connection closes now.
                    stopping = Some(Instant::now() + SHUTDOWN_GRACE);
                    conn.as_mut().graceful_shutdown();
                }
                // A request still not answered (a body that never comes) does not hold the stop.
                () = sleep_until(stopping) => {
                    tracing::debug!(%peer, "connection closed: still busy when the server stopped");
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A connection's clock, and word when its deadline moves sooner.
#[derive(Default)]
struct Watch {
    clock: Mutex<Clock>,
    changed: tokio::sync::Notify,
}

/// What a connection is doing, for its deadlines.
struct Clock {
    /// Requests whose answers are not out yet.
    in_hand: usize,
    /// Requests in hand whose bodies are still arriving.
    bodies_arriving: usize,
    /// Since when it has been waiting for a request (accepted, or its last
    /// answer went out), with nothing in hand.
    waiting_since: Instant,
    /// Whether it has served a request yet: a new connection's first
    /// request has the header timeout from its accept.
    served_one: bool,
    /// When the first byte of a request not yet in hand arrived.
    partial_since: Option<Instant>,
    /// When a byte last moved either way.
    last_io: Instant,
}

impl Default for Clock {
    fn default() -> Clock {
        let now = Instant::now();
        Clock {
            in_hand: 0,
            bodies_arriving: 0,
            waiting_since: now,
            served_one: false,
            partial_since: None,
            last_io: now,
        }
    }
}

impl Clock {
    /// When the connection is next due to close, if it stays as it is; none
    /// when a timeout reaches past what the clock can tell (a library's
    /// `Duration::MAX`: never).
    fn deadline(&self, header_read: Duration, idle: Duration) -> Option<Instant> {
        if self.in_hand > 0 {
            // A request being answered is never idle, unless its body stops
            // arriving (a client holding the connection by never finishing it).
            if self.bodies_arriving == 0 {
                return None;
            }
            return self.last_io.checked_add(idle);
        }
        match (self.partial_since, self.served_one) {
            // Headers begun and not finished.
            (Some(partial), _) => partial.checked_add(header_read),
            // A new connection that has sent nothing yet.
            (None, false) => self.waiting_since.checked_add(header_read),
            // Between requests.
            (None, true) => self.last_io.max(self.waiting_since).checked_add(idle),
        }
    }

    /// Why the connection must close now, if it must.
    fn overdue(&self, header_read: Duration, idle: Duration) -> Option<&'static str> {
        let deadline = self.deadline(header_read, idle)?;
        if Instant::now() < deadline {
            return None;
        }
        if self.in_hand > 0 {
            return Some("a request's body stopped arriving for longer than the idle timeout");
        }
        Some(match (self.partial_since, self.served_one) {
            (Some(_), _) | (None, false) => "a request's headers did not arrive within the header read timeout",
            (None, true) => "idle for longer than the idle timeout",
        })
    }

    /// Bytes arrived; true when they begin a request (its headers are now timed).
    fn read(&mut self) -> bool {
        let now = Instant::now();
        self.last_io = now;
        let begun = self.in_hand == 0 && self.partial_since.is_none();
        if begun {
            self.partial_since = Some(now);
        }
        begun
    }
}

/// A request in hand; its answer going out ends it.
struct Serving(Arc<Watch>);

impl Serving {
    fn start(watch: &Arc<Watch>) -> Serving {
        let mut clock = lock(&watch.clock);
        clock.in_hand += 1;
        clock.served_one = true;
        clock.partial_since = None;
        drop(clock);
        watch.changed.notify_one();
        Serving(watch.clone())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let mut clock = lock(&self.0.clock);
        clock.in_hand -= 1;
        let idle = clock.in_hand == 0;
        if idle {
            clock.waiting_since = Instant::now();
        }
        drop(clock);
        if idle {
            self.0.changed.notify_one();
        }
    }
}

/// A request body, counted as arriving until it ends, fails or is dropped
/// (a handler that answers without reading it).
struct Arriving {
    body: Incoming,
    /// The connection's clock, while the body is counted.
    counted: Option<Arc<Watch>>,
}

impl Arriving {
    fn new(body: Incoming, watch: &Arc<Watch>) -> Arriving {
        let counted = (!http_body::Body::is_end_stream(&body)).then(|| {
            lock(&watch.clock).bodies_arriving += 1;
            watch.changed.notify_one();
            watch.clone()
        });
        Arriving { body, counted }
    }

    fn arrived(&mut self) {
        if let Some(watch) = self.counted.take() {
            lock(&watch.clock).bodies_arriving -= 1;
            watch.changed.notify_one();
        }
    }
}

impl Drop for Arriving {
    fn drop(&mut self) {
        self.arrived();
    }
}

impl http_body::Body for Arriving {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) || self.body.is_end_stream() {
            self.arrived();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A response body that holds its request in hand until it is done.
struct Tracked {
    body: Body,
    _guard: Serving,
}

impl http_body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling the connection's clock when bytes arrive or leave,
/// holding its places under the connection limits, and putting the error
/// object into hyper's bare answers to requests it could not read.
struct Watched<I> {
    io: I,
    clock: Arc<Watch>,
    _pass: Pass,
    max_header_bytes: usize,
    /// A typed answer sent in place of hyper's bare one, and how much of it
    /// is out.
    typed_answer: Option<(Vec<u8>, usize)>,
}

impl<I: AsyncWrite + Unpin> Watched<I> {
    /// Writes out the typed answer, if one is waiting.
    fn poll_typed_answer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, sent)) = &mut self.typed_answer {
            if *sent == answer.len() {
                self.typed_answer = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &answer[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
            lock(&self.clock.clock).last_io = Instant::now();
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `data` whole when it is hyper's bare answer to a request it
    /// could not read, queueing the typed answer in its place.
    fn replaced(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let answer = crate::unparsed::typed(data, self.max_header_bytes)?;
        self.typed_answer = Some((answer, 0));
        // What cannot go out now goes out on the flush hyper sends next.
        Some(match self.poll_typed_answer(cx) {
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            _ => Poll::Ready(Ok(data.len())),
        })
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before && lock(&self.clock.clock).read() {
            self.clock.changed.notify_one();
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_typed_answer(cx))?;
        if let Some(replaced) = this.replaced(cx, data) {
            return replaced;
        }
        let written = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            lock(&this.clock.clock).last_io = Instant::now();
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_typed_answer(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_typed_answer(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_typed_answer(cx))?;
        // hyper queues a bare answer as one buffer of its own.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(replaced) = this.replaced(cx, first)
        {
            return replaced;
        }
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            lock(&this.clock.clock).last_io = Instant::now();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Clock;

    #[test]
    fn a_timeout_too_long_for_the_clock_is_no_deadline() {
        let (short, never) = (Duration::from_secs(1), Duration::MAX);
        // A new connection, waiting for its first request's headers.
        let mut clock = Clock::default();
        assert!(clock.deadline(short, short).is_some());
        assert_eq!(clock.deadline(never, short), None);
        // Headers begun.
        assert!(clock.read());
        assert_eq!(clock.deadline(never, short), None);
        assert_eq!(clock.overdue(never, short), None);
        // Between requests.
        clock.partial_since = None;
        clock.served_one = true;
        assert!(clock.deadline(short, short).is_some());
        assert_eq!(clock.deadline(short, never), None);
        // A request in hand whose body is still arriving.
        clock.in_hand = 1;
        clock.bodies_arriving = 1;
        assert!(clock.deadline(short, short).is_some());
        assert_eq!(clock.deadline(short, never), None);
        assert_eq!(clock.overdue(short, never), None);
    }
}
