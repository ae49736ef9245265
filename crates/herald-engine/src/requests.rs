//! Request/reply inside one process: a table of responders by pattern.
//!
//! A request goes to one responder whose pattern matches its subject, taken in
//! turn so that several responders share the load; its reply comes back on a
//! oneshot channel. Nothing touches the log. With no live responder the request
//! fails at once with `NoResponders`.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use herald_core::{
    Error, ErrorKind, Headers, MAX_WAIT, Pattern, Reply, ReplySink, Request, RequestBackend, Responder, Result, Subject,
};
use tokio::sync::{mpsc, oneshot};

use crate::engine::Engine;

/// Requests queued for one responder before senders try another or wait.
const RESPONDER_QUEUE: usize = 256;

/// The live responders.
#[derive(Default)]
pub(crate) struct Responders {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    entries: Vec<(Pattern, mpsc::Sender<Request>)>,
    turn: usize,
}

impl Responders {
    fn add(&self, pattern: Pattern) -> mpsc::Receiver<Request> {
        let (tx, rx) = mpsc::channel(RESPONDER_QUEUE);
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .push((pattern, tx));
        rx
    }

    /// The live responders of `subject`, starting with the one whose turn it is.
    fn for_subject(&self, subject: &Subject) -> Vec<mpsc::Sender<Request>> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        table.entries.retain(|(_, tx)| !tx.is_closed());
        let matching: Vec<_> = table
            .entries
            .iter()
            .filter(|(pattern, _)| pattern.matches_str(subject.as_str()))
            .map(|(_, tx)| tx.clone())
            .collect();
        if matching.is_empty() {
            return matching;
        }
        table.turn = table.turn.wrapping_add(1);
        let start = table.turn % matching.len();
        matching[start..].iter().chain(&matching[..start]).cloned().collect()
    }
}

struct OneshotSink(oneshot::Sender<Reply>);

impl ReplySink for OneshotSink {
    fn send(self: Box<Self>, reply: Reply) -> Result<()> {
        self.0
            .send(reply)
            .map_err(|_| Error::new(ErrorKind::Closed, "the requester stopped waiting for this reply"))
    }
}

struct LocalResponder {
    requests: mpsc::Receiver<Request>,
}

#[async_trait]
impl Responder for LocalResponder {
    async fn next(&mut self) -> Result<Request> {
        self.requests
            .recv()
            .await
            .ok_or_else(|| Error::new(ErrorKind::Closed, "the bus is closed"))
    }
}

fn no_responders(subject: &Subject) -> Error {
    Error::new(
        ErrorKind::NoResponders,
        format!("nobody serves requests on `{subject}`"),
    )
}

#[async_trait]
impl RequestBackend for Engine {
    async fn serve(&self, pattern: Pattern) -> Result<Box<dyn Responder>> {
        Ok(Box::new(LocalResponder {
            requests: self.inner.responders.add(pattern),
        }))
    }

    async fn request(&self, subject: Subject, headers: Headers, payload: Bytes, timeout: Duration) -> Result<Reply> {
        let candidates = self.inner.responders.for_subject(&subject);
        let (reply_tx, reply_rx) = oneshot::channel();
        let mut request = Some(Request::new(
            subject.clone(),
            headers,
            payload,
            Box::new(OneshotSink(reply_tx)),
        ));
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        // Busy or gone responders are skipped; if all are busy, wait for the first.
        for candidate in &candidates {
            let Some(pending) = request.take() else { break };
            match candidate.try_send(pending) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(back) | mpsc::error::TrySendError::Closed(back)) => {
                    request = Some(back);
                }
            }
        }
        if let Some(pending) = request {
            let Some(first) = candidates.iter().find(|c| !c.is_closed()) else {
                return Err(no_responders(&subject));
            };
            match tokio::time::timeout_at(deadline, first.send(pending)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(no_responders(&subject)),
                Err(_) => return Err(timed_out(&subject, timeout)),
            }
        }
        match tokio::time::timeout_at(deadline, reply_rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(Error::new(
                ErrorKind::Closed,
                format!("the responder on `{subject}` dropped the request without replying"),
            )),
            Err(_) => Err(timed_out(&subject, timeout)),
        }
    }
}

fn timed_out(subject: &Subject, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::Timeout,
        format!("no reply to the request on `{subject}` within {timeout:?}"),
    )
}
