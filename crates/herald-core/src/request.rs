//! Request/reply: the types both sides of a request see, whatever the backend.
//!
//! Requests are not stored: a request goes to one live responder of its
//! subject and its reply comes straight back. With no responder a request fails
//! at once with `NoResponders` rather than waiting for its timeout.

use std::fmt;

use bytes::Bytes;

use crate::error::Result;
use crate::message::Headers;
use crate::subject::Subject;

/// What a responder answers with, and what a requester gets back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Headers of the reply.
    pub headers: Headers,
    /// The reply's body.
    pub payload: Bytes,
}

impl Reply {
    /// A reply carrying `payload` and no headers.
    pub fn new(payload: impl Into<Bytes>) -> Reply {
        Reply {
            headers: Headers::new(),
            payload: payload.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// Where a backend delivers a responder's reply.
pub trait ReplySink: Send + 'static {
    /// Hands the reply to the requester.
    ///
    /// Errors: `Closed` if the requester stopped waiting (it timed out).
    fn send(self: Box<Self>, reply: Reply) -> Result<()>;
}

/// A request a responder received.
pub struct Request {
    /// The subject it was sent to.
    pub subject: Subject,
    /// Its headers.
    pub headers: Headers,
    /// Its body.
    pub payload: Bytes,
    reply: Box<dyn ReplySink>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("subject", &self.subject)
            .field("headers", &self.headers)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A request as a backend builds it.
    pub fn new(subject: Subject, headers: Headers, payload: Bytes, reply: Box<dyn ReplySink>) -> Request {
        Request {
            subject,
            headers,
            payload,
            reply,
        }
    }

    /// Answers the request.
    ///
    /// # Errors
    ///
    /// `Closed` if the requester stopped waiting.
    pub fn respond(self, reply: Reply) -> Result<()> {
        self.reply.send(reply)
    }
}
