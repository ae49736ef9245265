//! `herald serve`: the server on a data directory.
//!
//! Settings come from a TOML file (`--config`), the environment (`HERALD_…`)
//! and flags; a flag beats the environment, which beats the file, which
//! beats the defaults. Access tokens come from the file only.

use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use herald_cli::config::FileConfig;

use crate::log::{FilterSource, LogFormat};
use crate::{log, signal, units};

const DEFAULT_DATA_DIR: &str = "./herald-data";
const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

#[derive(Debug, clap::Args)]
pub(crate) struct Serve {
    /// A TOML config file (see docs/server.md): listen address, data
    /// directory, limits, TLS and access tokens.
    #[arg(long, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory (created if missing) [default: ./herald-data].
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The address to listen on [default: 127.0.0.1:7878]. A non-loopback
    /// address needs access tokens in the config file.
    #[arg(long, env = "HERALD_LISTEN")]
    listen: Option<SocketAddr>,
    /// The largest payload a publish may carry: bytes, or with a unit (512KiB,
    /// 4MiB) [default: 1MiB].
    #[arg(long, env = "HERALD_MAX_PAYLOAD", value_name = "SIZE", value_parser = parse_bytes)]
    max_payload: Option<NonZeroUsize>,
    /// Connections open at once, HTTP and WebSocket together, at most; past
    /// it a new connection is closed as it is accepted [default: 1024].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Connections open at once from one peer address, at most (set it only
    /// where clients connect directly, not through a proxy) [default: no
    /// limit per peer].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_PEER")]
    max_connections_per_peer: Option<NonZeroUsize>,
    /// WebSocket sessions and live tails open at once with one access
    /// token, at most; past it the next is answered 429 [default: no limit
    /// per token].
    #[arg(long, env = "HERALD_MAX_CONNECTIONS_PER_TOKEN")]
    max_connections_per_token: Option<NonZeroUsize>,
    /// How long a request's headers may take to arrive before the connection
    /// is closed, in ms [default: 10000].
    #[arg(long, env = "HERALD_HEADER_READ_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    header_read_timeout_ms: Option<u64>,
    /// The largest request head (request line and headers together) the
    /// server reads: bytes, or with a unit (32KiB); a bigger one is answered
    /// 431 [default: 16KiB; 1KiB to 256KiB].
    #[arg(long, env = "HERALD_MAX_HEADER_BYTES", value_name = "SIZE", value_parser = parse_bytes)]
    max_header_bytes: Option<NonZeroUsize>,
    /// How long a connection may stay silent between requests before it is
    /// closed, in ms [default: 60000].
    #[arg(long, env = "HERALD_IDLE_TIMEOUT_MS", value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_ms: Option<u64>,
    /// Subscriptions and responders per connection, at most [default: 1024].
    #[arg(long, env = "HERALD_MAX_SUBSCRIPTIONS")]
    max_subscriptions: Option<usize>,
    /// Operations one connection may have unanswered at once [default: 256].
    #[arg(long, env = "HERALD_MAX_IN_FLIGHT")]
    max_in_flight: Option<usize>,
    /// Frames queued for one connection before its reader counts as slow [default: 4096].
    #[arg(long, env = "HERALD_OUTBOUND_BUFFER")]
    outbound_buffer: Option<usize>,
    /// How much may be queued for one connection before its reader counts as
    /// slow: bytes, or with a unit (4MiB) [default: 16MiB].
    #[arg(long, env = "HERALD_OUTBOUND_BYTES", value_name = "SIZE", value_parser = parse_bytes)]
    outbound_bytes: Option<NonZeroUsize>,
    /// How long a full queue may stay full before the connection is closed, in ms [default: 5000].
    #[arg(long, env = "HERALD_SLOW_CONSUMER_TIMEOUT_MS")]
    slow_consumer_timeout_ms: Option<u64>,
    /// Refuses a publish to a subject no stream captures instead of creating
    /// a stream for it: for production servers, where a mistyped subject must
    /// not make a stream [default: streams are created].
    #[arg(
        long,
        env = "HERALD_NO_AUTO_CREATE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    no_auto_create: Option<bool>,
    /// Opens the data file without verifying the checksum of every page it
    /// uses: for a very large data file on a trusted disk, or to read what is
    /// intact in a damaged one (each damaged message is still refused when
    /// read) [default: verified at open].
    #[arg(
        long,
        env = "HERALD_NO_VERIFY_ON_OPEN",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
    )]
    no_verify_on_open: Option<bool>,
    /// A PEM certificate chain: serve HTTPS and wss:// (with --tls-key).
    #[arg(long, env = "HERALD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "HERALD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// What the log on stderr shows: a level (`warn`, `info`, `debug`) or
    /// levels per module (`info,herald_server=debug`) [default: RUST_LOG,
    /// else info].
    #[arg(long, env = "HERALD_LOG", value_name = "FILTER", value_parser = log::parse_filter)]
    log: Option<String>,
    /// How the log on stderr is written: `human` lines or `json`, one object
    /// a line [default: human].
    #[arg(long, env = "HERALD_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

/// redb's words, when opening failed because the open check found a damaged page.
fn failed_check(err: &herald::Error) -> Option<String> {
    let cause = std::error::Error::source(err)?.downcast_ref::<redb::DatabaseError>()?;
    matches!(cause, redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))).then(|| cause.to_string())
}

/// Everything `serve` needs, resolved.
struct Settings {
    data_dir: PathBuf,
    listen: SocketAddr,
    /// Whether a publish to a subject no stream captures creates a stream.
    auto_create_streams: bool,
    /// Whether opening verifies every page of the data file.
    verify_on_open: bool,
    limits: herald_server::Limits,
    tls: Option<(PathBuf, PathBuf)>,
    tokens: Vec<herald_server::Token>,
    /// The log's filter, and where it came from.
    log: (String, FilterSource),
    log_format: LogFormat,
}

impl Serve {
    fn settings(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_config(path)?,
            None => FileConfig::default(),
        };
        // Relative paths in the file are relative to the file.
        let base = self.config.as_deref().and_then(Path::parent).unwrap_or(Path::new(""));
        let defaults = herald_server::Limits::default();
        let limits = herald_server::Limits::default()
            .max_payload(pick(
                self.max_payload.map(NonZeroUsize::get),
                file.limits.max_payload,
                defaults.max_payload,
            ))
            .max_connections(pick(
                self.max_connections,
                file.limits.max_connections,
                defaults.max_connections,
            ))
            .max_connections_per_peer(self.max_connections_per_peer.or(file.limits.max_connections_per_peer))
            .max_connections_per_token(self.max_connections_per_token.or(file.limits.max_connections_per_token))
            .header_read_timeout(
                self.header_read_timeout_ms
                    .or(file.limits.header_read_timeout_ms.map(NonZeroU64::get))
                    .map_or(defaults.header_read_timeout, Duration::from_millis),
            )
            .max_header_bytes(
                self.max_header_bytes
                    .or(file.limits.max_header_bytes)
                    .map_or(defaults.max_header_bytes, NonZeroUsize::get),
            )
            .idle_timeout(
                self.idle_timeout_ms
                    .or(file.limits.idle_timeout_ms.map(NonZeroU64::get))
                    .map_or(defaults.idle_timeout, Duration::from_millis),
            )
            .max_subscriptions(pick(
                self.max_subscriptions,
                file.limits.max_subscriptions,
                defaults.max_subscriptions,
            ))
            .max_in_flight(pick(
                self.max_in_flight,
                file.limits.max_in_flight,
                defaults.max_in_flight,
            ))
            .outbound_buffer(pick(
                self.outbound_buffer,
                file.limits.outbound_buffer,
                defaults.outbound_buffer,
            ))
            .outbound_bytes(pick(
                self.outbound_bytes.map(NonZeroUsize::get),
                file.limits.outbound_bytes,
                defaults.outbound_bytes,
            ))
            .slow_consumer_timeout(
                self.slow_consumer_timeout_ms
                    .or(file.limits.slow_consumer_timeout_ms)
                    .map_or(defaults.slow_consumer_timeout, Duration::from_millis),
            );
        if let Err(invalid) = limits.validate() {
            bail!(
                "{} is {}; it must be from {} to {}",
                self.limit_setting(invalid.field()),
                invalid.value(),
                invalid.range().start(),
                invalid.range().end()
            );
        }
        let tls = match (self.tls_cert, self.tls_key, file.tls) {
            (Some(cert), Some(key), _) => Some((cert, key)),
            (_, _, Some(tls)) => Some((base.join(tls.cert), base.join(tls.key))),
            _ => None,
        };
        let data_dir = match (self.data_dir, file.data_dir) {
            (Some(dir), _) => dir,
            (None, Some(dir)) => base.join(dir),
            (None, None) => PathBuf::from(DEFAULT_DATA_DIR),
        };
        let listen = match self.listen.or(file.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN.parse().context("the default listen address")?,
        };
        let log = match (self.log, file.log, std::env::var("RUST_LOG")) {
            (Some(flag), _, _) => (flag, FilterSource::Flag),
            (None, Some(file), _) => (file, FilterSource::File),
            (None, None, Ok(rust_log)) if !rust_log.is_empty() => (rust_log, FilterSource::RustLog),
            _ => (log::DEFAULT_FILTER.to_owned(), FilterSource::Default),
        };
        let verify_on_open = match self.no_verify_on_open {
            Some(skip) => !skip,
            None => file.verify_on_open.unwrap_or(true),
        };
        let auto_create_streams = match self.no_auto_create {
            Some(refuse) => !refuse,
            None => file.auto_create_streams.unwrap_or(true),
        };
        Ok(Settings {
            data_dir,
            listen,
            auto_create_streams,
            verify_on_open,
            limits,
            tls,
            tokens: file.tokens,
            log,
            log_format: self.log_format.or(file.log_format).unwrap_or_default(),
        })
    }
}

impl Serve {
    /// A server limit as the user set it: its flag and variable, or its key
    /// in the config file. The flags and variables are the fields' names
    /// (`--max-in-flight`, `HERALD_MAX_IN_FLIGHT`); a default is always
    /// valid, so a limit not set by flag is the file's.
    fn limit_setting(&self, field: &str) -> String {
        let by_flag = match field {
            "max_connections" => self.max_connections.is_some(),
            "max_in_flight" => self.max_in_flight.is_some(),
            "outbound_buffer" => self.outbound_buffer.is_some(),
            "outbound_bytes" => self.outbound_bytes.is_some(),
            "max_header_bytes" => self.max_header_bytes.is_some(),
            _ => false,
        };
        match &self.config {
            Some(file) if !by_flag => format!("`{field}` under [limits] in {}", file.display()),
            _ => format!(
                "--{} (or HERALD_{})",
                field.replace('_', "-"),
                field.to_ascii_uppercase()
            ),
        }
    }
}

/// A size flag (`--max-payload 4MiB`), up to what this machine can address.
fn parse_bytes(text: &str) -> anyhow::Result<NonZeroUsize> {
    let addressable = u64::try_from(usize::MAX).unwrap_or(u64::MAX);
    units::parse_size_within(text, addressable, "this machine can address")
}

/// A flag (or its environment variable), else the file, else the default.
fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

fn read_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the config file {}", path.display()))?;
    herald_cli::config::parse(&text).with_context(|| format!("the config file {}", path.display()))
}

pub(crate) async fn run(serve: Serve) -> anyhow::Result<()> {
    let settings = serve.settings()?;
    let (filter, source) = &settings.log;
    log::install(settings.log_format, filter, *source)?;
    if !settings.listen.ip().is_loopback() && settings.tokens.is_empty() {
        bail!(
            "refusing to listen on {} without access tokens: anyone who can reach it could read and write \
             every stream; add [[tokens]] to the config file (`herald token NAME` makes one) or listen on a \
             loopback address such as 127.0.0.1",
            settings.listen
        );
    }
    let mut server_tls = None;
    if let Some((cert, key)) = &settings.tls {
        server_tls = Some(herald_server::TlsConfig::from_pem_files(cert, key).context("the TLS certificate")?);
    } else if !settings.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %settings.listen,
            "serving a non-loopback address without TLS: access tokens and messages cross the network in clear text"
        );
    }
    let verify = settings.verify_on_open;
    let bus = herald::Bus::builder()
        .path(&settings.data_dir)
        .auto_create_streams(settings.auto_create_streams)
        .engine(|engine| engine.verify_on_open(verify))
        .open()
        .await
        .map_err(|err| match failed_check(&err) {
            // The engine's words name its builder; these name the flag.
            Some(redb) => anyhow::anyhow!(
                "opening the data directory {}: the data file is damaged: a page failed its checksum ({redb}); \
                 restore the directory from a backup, or serve it with --no-verify-on-open to read what is intact",
                settings.data_dir.display()
            ),
            None => {
                anyhow::Error::new(err).context(format!("opening the data directory {}", settings.data_dir.display()))
            }
        })?;
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr().context("the bound address")?;
    let scheme = if server_tls.is_some() { "wss" } else { "ws" };
    // Scripts and tests read this line to find the port (with `--listen 127.0.0.1:0`).
    say(&format!(
        "herald listening on {scheme}://{addr}/v1/ws (data: {}, tokens: {})",
        settings.data_dir.display(),
        settings.tokens.len()
    ));
    log_start(&settings, addr);
    let access = if settings.tokens.is_empty() {
        herald_server::Access::Open
    } else {
        herald_server::Access::Tokens(settings.tokens)
    };
    // Checked with the settings: refused there, naming the flag or the key.
    let mut server = herald_server::Server::new(bus)
        .limits(settings.limits)
        .context("the server's limits")?
        .access(access);
    if let Some(tls) = server_tls {
        server = server.tls(tls);
    }
    let mut stops = signal::Stops::listen();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server.serve(listener, async {
        // Sent, or dropped on the way out: either way there is nothing left to serve.
        let _ = stopped.await;
    });
    tokio::pin!(serving);
    // The first Ctrl-C or SIGTERM: stop taking connections and let the ones
    // open finish what they started.
    let first = tokio::select! {
        served = &mut serving => return stopped_serving(served),
        first = stops.next() => first,
    };
    say(&format!(
        "herald stopping ({}): no new connections; waiting for open connections to finish the operations \
         they started (Ctrl-C again exits at once)",
        first.name()
    ));
    tracing::info!(
        signal = first.name(),
        "stopping: waiting for open connections to finish"
    );
    let _ = stop.send(());
    tokio::select! {
        served = &mut serving => stopped_serving(served),
        again = stops.next() => {
            say(&format!(
                "herald exiting now ({} again): unfinished operations get no answer; acknowledged publishes \
                 are on disk (a relaxed stream's last 100 ms excepted)",
                again.name()
            ));
            tracing::warn!(signal = again.name(), "exiting now: unfinished operations get no answer");
            exit_now(again.status())
        }
    }
}

/// Ends the process without waiting for anything: not for the sessions,
/// not for the runtime's threads (dropping the runtime would wait for them).
/// A publish is acknowledged only once it is durable (docs/semantics.md), so
/// this leaves the data directory as a crash would, with every acknowledged
/// message in it; the next open repairs the rest.
#[allow(clippy::exit, reason = "a second Ctrl-C means now, and the engine is crash-safe")]
fn exit_now(status: i32) -> ! {
    std::process::exit(status)
}

fn stopped_serving(served: std::io::Result<()>) -> anyhow::Result<()> {
    if let Err(err) = &served {
        tracing::error!(error = %err, "serving failed");
    }
    served.context("serving")?;
    tracing::info!("stopped");
    say("herald stopped");
    Ok(())
}

/// A duration in whole milliseconds, as a log field (a number in JSON).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The settings the server runs with, in the log: token names but never
/// their secrets or hashes.
fn log_start(settings: &Settings, addr: SocketAddr) {
    let limits = &settings.limits;
    let names = settings
        .tokens
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let per_peer = limits
        .max_connections_per_peer
        .map_or_else(|| "no limit".to_owned(), |n| n.to_string());
    let per_token = limits
        .max_connections_per_token
        .map_or_else(|| "no limit".to_owned(), |n| n.to_string());
    tracing::info!(
        listen = %addr,
        data_dir = %settings.data_dir.display(),
        tls = settings.tls.is_some(),
        auto_create_streams = settings.auto_create_streams,
        verify_on_open = settings.verify_on_open,
        tokens = settings.tokens.len(),
        token_names = names,
        max_payload = limits.max_payload,
        max_connections = limits.max_connections,
        max_connections_per_peer = %per_peer,
        max_connections_per_token = %per_token,
        header_read_timeout_ms = millis(limits.header_read_timeout),
        max_header_bytes = limits.max_header_bytes,
        idle_timeout_ms = millis(limits.idle_timeout),
        max_subscriptions = limits.max_subscriptions,
        max_in_flight = limits.max_in_flight,
        outbound_buffer = limits.outbound_buffer,
        outbound_bytes = limits.outbound_bytes,
        slow_consumer_timeout_ms = millis(limits.slow_consumer_timeout),
        "serving",
    );
}

/// A status line on stdout; a closed stdout (a supervisor gone) is no reason to fail.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// `herald token NAME`: a new access token, and the lines for the config file.
///
/// A token grants nothing it is not given: without `--publish`,
/// `--subscribe` or `--admin` it may only list and inspect.
#[derive(Debug, clap::Args)]
pub(crate) struct NewToken {
    /// A name for the token (shown in logs and errors).
    name: String,
    /// A subject pattern it may publish to (and send requests to); repeat for more (`orders.>`).
    #[arg(long, value_name = "PATTERN", value_parser = parse_pattern)]
    publish: Vec<herald::Pattern>,
    /// A subject pattern it may read: subscribe, tail, replay, consume, serve requests; repeat for more.
    #[arg(long, value_name = "PATTERN", value_parser = parse_pattern)]
    subscribe: Vec<herald::Pattern>,
    /// Let the token administer streams and consumers (create, change,
    /// delete, purge, reset, dead letters, /metrics).
    #[arg(long)]
    admin: bool,
}

fn parse_pattern(text: &str) -> Result<herald::Pattern, String> {
    herald::Pattern::new(text).map_err(|e| e.message().to_owned())
}

pub(crate) fn new_token(args: &NewToken) -> anyhow::Result<()> {
    let secret = herald_server::new_token_secret().context("generating a token")?;
    let hash = herald_server::token_hash(&secret);
    say(&format!(
        "# The token (give it to the client; the server keeps only its hash):\n# {secret}\n#\n# {}\n\n\
         [[tokens]]\nname = {}\nsha256 = \"{hash}\"\nadmin = {}\npublish = {{ allow = [{}], deny = [] }}\n\
         subscribe = {{ allow = [{}], deny = [] }}",
        grants(args),
        toml_string(&args.name),
        args.admin,
        toml_list(&args.publish),
        toml_list(&args.subscribe),
    ));
    Ok(())
}

/// What a new token may do, in a sentence.
fn grants(args: &NewToken) -> String {
    let patterns = |list: &[herald::Pattern]| list.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ");
    let mut may = Vec::new();
    if !args.publish.is_empty() {
        may.push(format!("publish to {}", patterns(&args.publish)));
    }
    if !args.subscribe.is_empty() {
        may.push(format!("read {}", patterns(&args.subscribe)));
    }
    if args.admin {
        may.push("administer streams and consumers".to_owned());
    }
    if may.is_empty() {
        return "It may only list and inspect streams and consumers: give it --publish or --subscribe \
                patterns, or --admin, for more."
            .to_owned();
    }
    format!("It may {}, and list and inspect; nothing else.", may.join("; "))
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn toml_list(patterns: &[herald::Pattern]) -> String {
    patterns
        .iter()
        .map(|p| toml_string(p.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}
