//! Request/reply on the facade: [`Bus::request`], [`Bus::responder`] and
//! [`Bus::serve`], which runs a handler for every request.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use herald_core::{Headers, Reply, Request, Responder, Result, Subject};

/// A responder's requests, to answer one by one with [`Request::respond`].
pub struct Service {
    inner: Box<dyn Responder>,
}

impl fmt::Debug for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service").finish_non_exhaustive()
    }
}

impl Service {
    pub(crate) fn new(inner: Box<dyn Responder>) -> Service {
        Service { inner }
    }

    /// The next request, waiting for one.
    ///
    /// # Errors
    ///
    /// `Closed` when the bus is gone.
    pub async fn next(&mut self) -> Result<Request> {
        self.inner.next().await
    }
}

/// A request as a [`Bus::serve`](crate::Bus::serve) handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The subject it was sent to.
    pub subject: Subject,
    /// Its headers.
    pub headers: Headers,
    /// Its body.
    pub payload: Bytes,
}

/// A running [`Bus::serve`](crate::Bus::serve): it stops when dropped or
/// [`stop`](ServiceHandle::stop)ped.
#[derive(Debug)]
pub struct ServiceHandle {
    task: tokio::task::JoinHandle<()>,
}

impl ServiceHandle {
    /// Stops answering; requests already being handled are dropped (their
    /// requesters get `Closed`).
    pub fn stop(self) {}
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn spawn<F, Fut>(mut service: Service, handler: F) -> ServiceHandle
where
    F: Fn(Incoming) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let handler = Arc::new(handler);
    let task = tokio::spawn(async move {
        // Each request on its own task: a slow one does not hold up the rest.
        let mut handling = tokio::task::JoinSet::new();
        while let Ok(request) = service.next().await {
            while handling.try_join_next().is_some() {}
            let handler = handler.clone();
            handling.spawn(async move {
                let incoming = Incoming {
                    subject: request.subject.clone(),
                    headers: request.headers.clone(),
                    payload: request.payload.clone(),
                };
                let reply = handler(incoming).await;
                // A requester that timed out is no longer listening; nothing to do.
                let _ = request.respond(reply);
            });
        }
    });
    ServiceHandle { task }
}
