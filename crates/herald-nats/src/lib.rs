//! Herald on NATS JetStream: the Backend traits over async-nats.
//!
//! Each Herald concept maps onto JetStream's own: a stream is a JetStream
//! stream (file storage, direct gets, per-message TTLs and atomic batches on);
//! a message id is `Nats-Msg-Id`; expected versions are the
//! `Nats-Expected-*` headers; a durable consumer is a durable pull consumer
//! with explicit acks; request/reply is core NATS request/reply. Dead letters
//! go to a Herald-managed stream, as on the embedded engine. Where JetStream
//! cannot keep one of Herald's promises the backend returns `Unsupported`;
//! docs/nats.md lists every difference.
//!
//! ```no_run
//! # async fn run() -> herald_core::Result<()> {
//! let backend = herald_nats::NatsBackend::connect(herald_nats::NatsOptions::new("nats://127.0.0.1:4222")).await?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod api;
mod codec;
mod consumers;
mod deliveries;
mod feed;
mod leases;
mod live;
mod requests;
mod streams;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::{ConsumerName, Error, ErrorKind, Result, StreamName};

use crate::consumers::ConsumerState;
use crate::streams::StreamCache;

/// How to reach a NATS server or cluster.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    urls: Vec<String>,
    token: Option<String>,
    user_password: Option<(String, String)>,
    require_tls: bool,
    root_certificates: Vec<PathBuf>,
    client_certificate: Option<(PathBuf, PathBuf)>,
    name: String,
    replicas: usize,
    max_reconnects: Option<usize>,
    connection_timeout: Duration,
    request_timeout: Duration,
}

impl NatsOptions {
    /// Options for the server(s) at `urls`: one URL, or several separated by commas.
    pub fn new(urls: impl AsRef<str>) -> NatsOptions {
        NatsOptions {
            urls: urls
                .as_ref()
                .split(',')
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            token: None,
            user_password: None,
            require_tls: false,
            root_certificates: Vec::new(),
            client_certificate: None,
            name: "herald".to_owned(),
            replicas: 1,
            max_reconnects: None,
            connection_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// Adds a server to try.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Authenticates with a user and password.
    pub fn user_and_password(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user_password = Some((user.into(), password.into()));
        self
    }

    /// Requires TLS, trusting the system roots and any added with
    /// [`root_certificate`](Self::root_certificate).
    pub fn require_tls(mut self, required: bool) -> Self {
        self.require_tls = required;
        self
    }

    /// Trusts this PEM CA certificate.
    pub fn root_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.root_certificates.push(path.into());
        self
    }

    /// Presents this client certificate and key (PEM) for mutual TLS.
    pub fn client_certificate(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_certificate = Some((cert.into(), key.into()));
        self
    }

    /// The connection name servers show in their monitoring. Default: `herald`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Replicas of every stream and dead-letter stream this backend creates
    /// (1, or 3 or 5 on a cluster). Default: 1.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// Gives up after this many reconnect attempts in a row. Default: never.
    pub fn max_reconnects(mut self, attempts: usize) -> Self {
        self.max_reconnects = Some(attempts);
        self
    }

    /// How long one connection attempt may take. Default: 5 s.
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long a JetStream API call or publish may wait for its answer. Default: 10 s.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    fn connect_options(&self) -> Result<async_nats::ConnectOptions> {
        let mut options = async_nats::ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(self.connection_timeout)
            .request_timeout(Some(self.request_timeout))
            .max_reconnects(self.max_reconnects)
            .require_tls(self.require_tls)
            // Reconnects back off from 10 ms up to 2 s.
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis(10u64.saturating_mul(1 << attempt.min(8))).min(Duration::from_secs(2))
            });
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some((user, password)) = &self.user_password {
            options = options.user_and_password(user.clone(), password.clone());
        }
        for root in &self.root_certificates {
            options = options.add_root_certificates(root.clone());
        }
        if let Some((cert, key)) = &self.client_certificate {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        Ok(options)
    }
}

/// The Backend traits on a NATS JetStream server or cluster.
#[derive(Clone)]
pub struct NatsBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    replicas: usize,
    streams: StreamCache,
    consumers: Mutex<HashMap<(StreamName, ConsumerName), Arc<ConsumerState>>>,
}

impl std::fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackend")
            .field("replicas", &self.inner.replicas)
            .finish_non_exhaustive()
    }
}

impl NatsBackend {
    /// Connects to NATS and checks that JetStream answers.
    ///
    /// # Errors
    ///
    /// `InvalidConfig` for no URL or an invalid one; `Closed` when no
    /// server could be reached; `Unsupported` when JetStream is not enabled.
    pub async fn connect(options: NatsOptions) -> Result<NatsBackend> {
        if options.urls.is_empty() {
            return Err(Error::new(ErrorKind::InvalidConfig, "no NATS server URL given"));
        }
        let addrs = options
            .urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, format!("a NATS URL is invalid: {e}")).with_source(e))?;
        let client = options
            .connect_options()?
            .connect(addrs)
            .await
            .map_err(|e| api::closed("connecting to NATS", e))?;
        let backend = NatsBackend::from_client(client, options.replicas);
        let _: serde_json::Value =
            api::call(&backend.inner.client, "INFO".into(), &(), "JetStream account info").await?;
        Ok(backend)
    }

    /// A backend on an existing connection; streams get `replicas` replicas.
    pub fn from_client(client: async_nats::Client, replicas: usize) -> NatsBackend {
        NatsBackend {
            inner: Arc::new(Inner {
                client,
                replicas: replicas.max(1),
                streams: StreamCache::default(),
                consumers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The underlying NATS connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.inner.client
    }
}
