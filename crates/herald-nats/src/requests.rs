//! Request/reply over core NATS: responders share a queue group, so each
//! request goes to one of them, and NATS answers "no responders" at once.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use herald_core::{
    Error, ErrorKind, Headers, Pattern, Reply, ReplySink, Request, RequestBackend, Responder, Result, Subject,
};

use crate::NatsBackend;
use crate::api;

/// The queue group every Herald responder joins.
const QUEUE: &str = "herald";
/// Set on the answer a responder sends when it drops a request unanswered.
const STATUS: &str = "Herald-Status";
const DROPPED: &str = "dropped";

fn to_nats_headers(headers: &Headers) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name: HeaderName = name.parse().map_err(|e| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("header name `{}` cannot travel over NATS: {e}", name.escape_debug()),
            )
        })?;
        let value: HeaderValue = value.parse().map_err(|e| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("a header value cannot travel over NATS: {e}"),
            )
        })?;
        map.append(name, value);
    }
    Ok(map)
}

fn from_nats_headers(headers: Option<&HeaderMap>) -> Headers {
    headers
        .into_iter()
        .flat_map(HeaderMap::iter)
        .filter(|(name, _)| {
            let name: &str = name.as_ref();
            name != STATUS
        })
        .filter_map(|(name, values)| Some((name.to_string(), values.last()?.as_str().to_owned())))
        .collect()
}

struct NatsResponder {
    requests: async_nats::Subscriber,
    client: async_nats::Client,
}

struct NatsReply {
    client: async_nats::Client,
    to: Option<async_nats::Subject>,
}

impl ReplySink for NatsReply {
    fn send(mut self: Box<Self>, reply: Reply) -> Result<()> {
        let Some(to) = self.to.take() else {
            return Ok(());
        };
        let headers = to_nats_headers(&reply.headers)?;
        let client = self.client.clone();
        // A reply is fire-and-forget in NATS; sending it is only a buffer write.
        tokio::spawn(async move {
            if let Err(err) = client.publish_with_headers(to, headers, reply.payload).await {
                tracing::warn!(%err, "a reply could not be sent");
            }
        });
        Ok(())
    }
}

impl Drop for NatsReply {
    fn drop(&mut self) {
        // Unanswered: tell the requester at once rather than let it time out.
        if let (Some(to), Ok(runtime)) = (self.to.take(), tokio::runtime::Handle::try_current()) {
            let client = self.client.clone();
            let mut headers = HeaderMap::new();
            headers.insert(HeaderName::from_static(STATUS), HeaderValue::from(DROPPED));
            runtime.spawn(async move {
                let _ = client.publish_with_headers(to, headers, Bytes::new()).await;
            });
        }
    }
}

#[async_trait]
impl Responder for NatsResponder {
    async fn next(&mut self) -> Result<Request> {
        loop {
            let Some(message) = self.requests.next().await else {
                return Err(Error::new(ErrorKind::Closed, "the NATS connection closed"));
            };
            // A message without a reply subject is a publish, not a request.
            let Some(reply_to) = message.reply.clone() else {
                continue;
            };
            let Ok(subject) = Subject::new(message.subject.as_str()) else {
                continue;
            };
            let sink = NatsReply {
                client: self.client.clone(),
                to: Some(reply_to),
            };
            return Ok(Request::new(
                subject,
                from_nats_headers(message.headers.as_ref()),
                message.payload,
                Box::new(sink),
            ));
        }
    }
}

#[async_trait]
impl RequestBackend for NatsBackend {
    async fn serve(&self, pattern: Pattern) -> Result<Box<dyn Responder>> {
        let client = self.inner.client.clone();
        let requests = client
            .queue_subscribe(pattern.as_str().to_owned(), QUEUE.to_owned())
            .await
            .map_err(|e| api::closed("serving requests", e))?;
        // Registered before `serve` returns, so a request sent next finds it.
        client.flush().await.map_err(|e| api::closed("serving requests", e))?;
        Ok(Box::new(NatsResponder { requests, client }))
    }

    async fn request(&self, subject: Subject, headers: Headers, payload: Bytes, timeout: Duration) -> Result<Reply> {
        let request = async_nats::Request::new()
            .payload(payload)
            .headers(to_nats_headers(&headers)?)
            .timeout(Some(timeout));
        let answer = self
            .inner
            .client
            .send_request(subject.to_string(), request)
            .await
            .map_err(|e| api::request_error(e, &format!("request to `{subject}`")))?;
        let dropped = answer
            .headers
            .as_ref()
            .and_then(|h| h.get(STATUS))
            .is_some_and(|v| v.as_str() == DROPPED);
        if dropped {
            return Err(Error::new(
                ErrorKind::Closed,
                format!("the responder of `{subject}` dropped the request unanswered"),
            ));
        }
        Ok(Reply {
            headers: from_nats_headers(answer.headers.as_ref()),
            payload: answer.payload,
        })
    }
}
