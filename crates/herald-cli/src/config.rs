//! `herald serve --config herald.toml`: the file's settings as they are
//! read (docs/server.md lists them). `serve` merges them with the
//! environment and the flags.

use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use serde::Deserialize;

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The data directory, relative to the file.
    pub data_dir: Option<PathBuf>,
    /// The address to listen on.
    pub listen: Option<SocketAddr>,
    /// Whether a publish to a subject no stream captures creates a stream.
    pub auto_create_streams: Option<bool>,
    /// Whether opening verifies every page of the data file.
    pub verify_on_open: Option<bool>,
    /// The log's filter directives.
    pub log: Option<String>,
    /// How log lines are written.
    pub log_format: Option<LogFormat>,
    /// `[limits]`.
    #[serde(default)]
    pub limits: FileLimits,
    /// `[tls]`.
    pub tls: Option<FileTls>,
    /// `[[tokens]]`.
    #[serde(default)]
    pub tokens: Vec<herald_server::Token>,
}

/// `[limits]`: each as the flag of the same name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_payload: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_connections_per_peer: Option<NonZeroUsize>,
    pub max_connections_per_token: Option<NonZeroUsize>,
    pub header_read_timeout_ms: Option<NonZeroU64>,
    pub max_header_bytes: Option<NonZeroUsize>,
    pub idle_timeout_ms: Option<NonZeroU64>,
    pub max_subscriptions: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub outbound_buffer: Option<usize>,
    pub outbound_bytes: Option<usize>,
    pub slow_consumer_timeout_ms: Option<u64>,
}

/// `[tls]`: PEM files, relative to the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// The certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// How each log line is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `2026-01-01T00:00:00.000000Z  INFO herald: message key=value`, for people.
    #[default]
    Human,
    /// One JSON object a line (`timestamp`, `level`, `target`, `message` and
    /// the event's fields), for log collectors.
    Json,
}

/// Reads a config file's text.
///
/// # Errors
///
/// The TOML is malformed, or a setting is unknown or of the wrong type
/// (the error says which, and where).
pub fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}
