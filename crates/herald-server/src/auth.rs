//! Access tokens: who may publish, subscribe, replay, consume and administer.
//!
//! Every check goes through [`Caller::check`], for the WebSocket protocol
//! and the HTTP API alike. A token is presented as `Authorization: Bearer …`
//! (or, for browsers that cannot set headers on `EventSource` and
//! `WebSocket`, as the `access_token` query parameter); the server keeps only
//! its SHA-256.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use herald_core::{Backend, ConsumerName, Error, ErrorKind, Pattern, Result, StreamName, Subject};
use serde::Deserialize;

use crate::{AppState, lock};

/// Who may connect: anyone (the default, for loopback servers), or holders of
/// the configured tokens.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// No tokens: every caller may do everything.
    #[default]
    Open,
    /// Only callers presenting one of these tokens, each with its grants.
    Tokens(Vec<Token>),
}

impl Access {
    /// Whether callers must present a token.
    pub fn requires_token(&self) -> bool {
        matches!(self, Access::Tokens(_))
    }
}

/// [`Access`] as the server consults it: each token shared, not copied, by
/// the callers that present it.
#[derive(Debug)]
pub(crate) struct Keyring(Option<Vec<Arc<Token>>>);

impl From<Access> for Keyring {
    fn from(access: Access) -> Keyring {
        match access {
            Access::Open => Keyring(None),
            Access::Tokens(tokens) => Keyring(Some(tokens.into_iter().map(Arc::new).collect())),
        }
    }
}

impl Keyring {
    /// The grants of the token `secret`, or `None` if it is not one of ours.
    fn lookup(&self, secret: &str) -> Option<Arc<Token>> {
        let digest = sha256(secret.as_bytes());
        self.0
            .iter()
            .flatten()
            .find(|t| constant_time_eq(&t.sha256, &digest))
            .cloned()
    }
}

/// An access token as the config file describes it: a name for logs, the
/// SHA-256 of the secret (hex), and what it may do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// A name for people and logs (the secret is never logged).
    pub name: String,
    /// The SHA-256 of the secret, as 64 hex digits.
    #[serde(deserialize_with = "hex_digest")]
    pub sha256: [u8; 32],
    /// Stream and consumer administration: create, update, delete, purge,
    /// reset, dead-letter replay and purge, and `/metrics`.
    #[serde(default)]
    pub admin: bool,
    /// The subjects it may publish to (and send requests to).
    #[serde(default)]
    pub publish: Permissions,
    /// The subjects it may read: subscribe, replay, consume, serve requests.
    #[serde(default)]
    pub subscribe: Permissions,
}

impl Token {
    /// A token named `name` for the secret `secret`, with no grants yet.
    pub fn new(name: impl Into<String>, secret: &str) -> Token {
        Token {
            name: name.into(),
            sha256: sha256(secret.as_bytes()),
            admin: false,
            publish: Permissions::default(),
            subscribe: Permissions::default(),
        }
    }

    /// Allows administration.
    pub fn admin(mut self) -> Token {
        self.admin = true;
        self
    }

    /// Sets what it may publish to.
    pub fn publish(mut self, permissions: Permissions) -> Token {
        self.publish = permissions;
        self
    }

    /// Sets what it may read.
    pub fn subscribe(mut self, permissions: Permissions) -> Token {
        self.subscribe = permissions;
        self
    }
}

/// Subject patterns a token is allowed and denied; a deny wins over an allow.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Patterns allowed (nothing when empty).
    #[serde(default)]
    pub allow: Vec<Pattern>,
    /// Patterns denied, whatever is allowed.
    #[serde(default)]
    pub deny: Vec<Pattern>,
}

impl Permissions {
    /// Allows `patterns` and denies `denied`.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid pattern.
    pub fn new<A: AsRef<str>, D: AsRef<str>>(
        allow: impl IntoIterator<Item = A>,
        deny: impl IntoIterator<Item = D>,
    ) -> Result<Permissions> {
        Ok(Permissions {
            allow: allow.into_iter().map(Pattern::new).collect::<Result<_>>()?,
            deny: deny.into_iter().map(Pattern::new).collect::<Result<_>>()?,
        })
    }

    /// Whether `subject` is allowed and not denied.
    fn permits(&self, subject: &Subject) -> bool {
        self.allow.iter().any(|p| p.matches(subject)) && !self.deny.iter().any(|p| p.matches(subject))
    }

    /// Whether every subject of `pattern` is allowed and none denied.
    fn covers(&self, pattern: &Pattern) -> bool {
        self.allow.iter().any(|p| pattern.is_subset_of(p)) && !self.deny.iter().any(|p| p.overlaps(pattern))
    }

    /// Whether `pattern` is within what is allowed and not wholly denied (a
    /// live subscription then skips the denied subjects it would match).
    fn admits(&self, pattern: &Pattern) -> bool {
        self.allow.iter().any(|p| pattern.is_subset_of(p)) && !self.deny.iter().any(|p| pattern.is_subset_of(p))
    }
}

/// What a caller asks to do.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action<'a> {
    /// Publish to a subject, or send a request to it.
    Publish(&'a Subject),
    /// A live subscription (or a responder) on a pattern; denied subjects
    /// inside it are skipped with [`Caller::sees`].
    Subscribe(&'a Pattern),
    /// Read stored messages of a stream, all of it or one subject.
    Replay {
        stream: &'a StreamName,
        subject: Option<&'a Subject>,
    },
    /// Answer requests sent to a pattern (every subject of it must be readable).
    Serve(&'a Pattern),
    /// Fetch a durable consumer's deliveries: decided afresh each time, so
    /// a consumer whose filters changed is held to its new ones.
    Consume {
        stream: &'a StreamName,
        consumer: &'a ConsumerName,
    },
    /// Settle deliveries of a durable consumer: allowed as this caller's last
    /// fetch from it was (settling what was leased changes no access), else
    /// decided as a fetch.
    Settle {
        stream: &'a StreamName,
        consumer: &'a ConsumerName,
    },
    /// Stream and consumer administration.
    Admin,
    /// Names, configs and counts of streams and consumers.
    Inspect,
}

/// The caller of one request or WebSocket session: everything is allowed
/// when the server has no tokens, otherwise what its token grants.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    token: Option<Arc<Token>>,
    /// Where it connected from, for the log; unknown when the routes are
    /// nested in an app that does not say.
    peer: Peer,
    /// Consumers this caller's last fetch was allowed to read (a session
    /// settles each delivery; the consumer's filters are looked up per fetch,
    /// not per settle).
    consuming: Arc<Mutex<HashSet<(StreamName, ConsumerName)>>>,
}

impl Caller {
    /// Identifies the caller from its headers (or `access_token` query).
    ///
    /// # Errors
    ///
    /// `PermissionDenied` when tokens are required and none, or an unknown
    /// one, is presented.
    pub(crate) fn identify(keyring: &Keyring, parts: &Parts) -> Result<Caller> {
        let peer = Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0));
        if keyring.0.is_none() {
            return Ok(Caller::with(None, peer));
        }
        // The path only: the query may carry the token itself (`access_token`).
        let refused = |token: &str, message: &'static str| {
            let request = format_args!("{} {}", parts.method, parts.uri.path());
            tracing::warn!(token, %request, %peer, "access refused: {message}");
            Error::new(ErrorKind::PermissionDenied, message)
        };
        let Some(secret) = presented_token(parts) else {
            return Err(refused(
                "none",
                "this server requires an access token: send `Authorization: Bearer <token>`",
            ));
        };
        match keyring.lookup(&secret) {
            Some(token) => Ok(Caller::with(Some(token), peer)),
            None => Err(refused("unknown", "unknown access token")),
        }
    }

    /// The caller of a server without tokens, from nowhere in particular: a
    /// session the fuzzers run without a socket.
    pub(crate) fn anonymous() -> Caller {
        Caller::with(None, Peer(None))
    }

    fn with(token: Option<Arc<Token>>, peer: Peer) -> Caller {
        Caller {
            token,
            peer,
            consuming: Arc::default(),
        }
    }

    /// Where it connected from, for logs.
    pub(crate) fn peer(&self) -> Peer {
        self.peer
    }

    fn may_consume(&self, stream: &StreamName, consumer: &ConsumerName) -> bool {
        lock(&self.consuming).contains(&(stream.clone(), consumer.clone()))
    }

    /// The name of the token it presented; `None` on a server without tokens.
    pub(crate) fn token_name(&self) -> Option<&str> {
        self.token.as_deref().map(|t| t.name.as_str())
    }

    /// The token's name, for logs.
    pub(crate) fn name(&self) -> &str {
        self.token.as_ref().map_or("anonymous", |t| t.name.as_str())
    }

    /// Whether a live subscription may deliver a message on `subject`.
    pub(crate) fn sees(&self, subject: &Subject) -> bool {
        self.token.as_ref().is_none_or(|t| t.subscribe.permits(subject))
    }

    /// Allows or refuses `action`: the one place access is decided.
    ///
    /// # Errors
    ///
    /// `PermissionDenied` naming what was refused; errors looking up the
    /// stream or consumer a replay or consume is about.
    pub(crate) async fn check(&self, backend: &Arc<dyn Backend>, action: Action<'_>) -> Result<()> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        if token.admin {
            return Ok(());
        }
        let allowed = match action {
            Action::Inspect => true,
            Action::Admin => false,
            Action::Publish(subject) => token.publish.permits(subject),
            Action::Subscribe(pattern) => token.subscribe.admits(pattern),
            Action::Serve(pattern) => token.subscribe.covers(pattern),
            Action::Replay {
                subject: Some(subject), ..
            } => token.subscribe.permits(subject),
            Action::Replay { stream, subject: None } => {
                let config = backend.stream_info(stream).await?.config;
                config.subjects.iter().all(|p| token.subscribe.covers(p))
            }
            Action::Settle { stream, consumer } if self.may_consume(stream, consumer) => true,
            Action::Consume { stream, consumer } | Action::Settle { stream, consumer } => {
                let filters = backend.consumer_config(stream, consumer).await?.filters;
                let patterns = if filters.is_empty() {
                    backend.stream_info(stream).await?.config.subjects
                } else {
                    filters
                };
                let allowed = patterns.iter().all(|p| token.subscribe.covers(p));
                let key = (stream.clone(), consumer.clone());
                if allowed {
                    lock(&self.consuming).insert(key);
                } else {
                    lock(&self.consuming).remove(&key);
                }
                allowed
            }
        };
        if allowed {
            return Ok(());
        }
        let refused = describe(action);
        tracing::warn!(token = token.name, action = refused, peer = %self.peer, "access refused: not granted");
        Err(Error::new(
            ErrorKind::PermissionDenied,
            format!("token `{}` may not {refused}", token.name),
        ))
    }
}

/// A caller's address as logs show it: `-` when unknown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(Option<SocketAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("-"),
        }
    }
}

fn describe(action: Action<'_>) -> String {
    match action {
        Action::Publish(subject) => format!("publish to `{subject}`"),
        Action::Subscribe(pattern) => format!("subscribe to `{pattern}`"),
        Action::Serve(pattern) => format!("answer requests on `{pattern}`"),
        Action::Replay {
            stream,
            subject: Some(subject),
        } => format!("read `{subject}` in stream `{stream}`"),
        Action::Replay { stream, subject: None } => format!("read every subject of stream `{stream}`"),
        Action::Consume { stream, consumer } | Action::Settle { stream, consumer } => {
            format!("consume `{consumer}` of stream `{stream}`")
        }
        Action::Admin => "administer streams and consumers".to_owned(),
        Action::Inspect => "inspect streams".to_owned(),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> std::result::Result<Caller, Response> {
        Caller::identify(&state.keyring, parts).map_err(|err| {
            let body = axum::Json(crate::wire_error(&err));
            let challenge = [(axum::http::header::WWW_AUTHENTICATE, "Bearer")];
            (StatusCode::UNAUTHORIZED, challenge, body).into_response()
        })
    }
}

/// The token in `Authorization: Bearer …`, or in the `access_token` query parameter.
fn presented_token(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned());
    }
    #[derive(Deserialize)]
    struct TokenQuery {
        access_token: Option<String>,
    }
    let query = axum::extract::Query::<TokenQuery>::try_from_uri(&parts.uri).ok()?;
    query.0.access_token
}

/// The SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The SHA-256 of `secret` as the config file writes it (64 lowercase hex digits).
pub fn token_hash(secret: &str) -> String {
    sha256(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random secret: 32 bytes from the system's generator, URL-safe base64.
///
/// # Errors
///
/// `Internal` when the system has no randomness to give.
pub fn new_token_secret() -> Result<String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::new(ErrorKind::Internal, "the system's random generator failed"))?;
    Ok(format!(
        "hrd_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hex_digest<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<[u8; 32], D::Error> {
    let text = String::deserialize(deserializer)?;
    let invalid = || serde::de::Error::custom("sha256 must be 64 hex digits (`herald token` prints one)");
    // `from_str_radix` takes a leading `+`, so each digit is checked first:
    // `+f` is not a byte of a digest.
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2).ok_or_else(invalid)?;
        *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pattern(p: &str) -> Pattern {
        Pattern::new(p).unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let perms = Permissions::new(["orders.>"], ["orders.secret.>"]).unwrap();
        assert!(perms.permits(&Subject::new("orders.eu.created").unwrap()));
        assert!(!perms.permits(&Subject::new("orders.secret.x").unwrap()));
        assert!(!perms.permits(&Subject::new("payments.x").unwrap()));
        // A pattern overlapping the denied part is not covered (replay, consume) ...
        assert!(!perms.covers(&pattern("orders.>")));
        assert!(perms.covers(&pattern("orders.eu.*")));
        // ... but may be subscribed to live, the denied subjects skipped.
        assert!(perms.admits(&pattern("orders.>")));
        assert!(!perms.admits(&pattern("orders.secret.*")));
        assert!(!perms.admits(&pattern(">")));
    }

    #[test]
    fn a_token_is_found_by_its_hash_only() {
        let keyring = Keyring::from(Access::Tokens(vec![Token::new("a", "s3cret")]));
        assert_eq!(keyring.lookup("s3cret").unwrap().name, "a");
        assert!(keyring.lookup("s3cret ").is_none());
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        let parts = |uri: &str| axum::http::Request::get(uri).body(()).unwrap().into_parts().0;
        assert_eq!(
            presented_token(&parts("/v1/tail?pattern=a.%3E&access_token=a%2Bb+c")).as_deref(),
            Some("a+b c")
        );
        assert_eq!(
            presented_token(&parts("/v1/ws?access_token=100%")).as_deref(),
            Some("100%")
        );
        assert_eq!(presented_token(&parts("/v1/tail?pattern=a.%3E")), None);
    }

    #[test]
    fn hashes_in_the_config_must_be_64_hex_digits() {
        let parsed: std::result::Result<Token, _> = serde_json::from_str(r#"{"name": "x", "sha256": "abc"}"#);
        assert!(parsed.unwrap_err().to_string().contains("64 hex digits"));
        // Found by the config fuzzer: a sign is no hex digit, though Rust's
        // number parser takes one (`+f` read as 0x0f).
        let signed = format!(r#"{{"name": "x", "sha256": "+f{}"}}"#, "0".repeat(62));
        let parsed: std::result::Result<Token, _> = serde_json::from_str(&signed);
        assert!(parsed.unwrap_err().to_string().contains("64 hex digits"));
    }
}
