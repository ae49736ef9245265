//! `herald serve`'s log: `tracing` events of the server and the engine,
//! written to stderr as human lines or as JSON, one object a line
//! (docs/server.md, "Logs").
//!
//! Only `serve` installs it: the client commands keep stderr for their own
//! messages.

use anyhow::{Context, anyhow};
pub(crate) use herald_cli::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// What the log is filtered by when nothing says: the server's start, stop,
/// refusals and failures, not every connection.
pub(crate) const DEFAULT_FILTER: &str = "info";

/// Where the filter came from, so an invalid one is named by its source.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FilterSource {
    /// `--log` or `HERALD_LOG` (already checked by the flag's parser).
    Flag,
    /// The config file's `log` key.
    File,
    /// `RUST_LOG`.
    RustLog,
    /// [`DEFAULT_FILTER`].
    Default,
}

/// Checks `--log` (or `HERALD_LOG`) as clap reads it, so a bad directive is
/// refused naming the flag.
pub(crate) fn parse_filter(text: &str) -> Result<String, String> {
    filter(text).map(|_| text.to_owned()).map_err(|e| e.to_string())
}

fn filter(text: &str) -> anyhow::Result<EnvFilter> {
    EnvFilter::builder().parse(text).map_err(|err| {
        anyhow!(
            "`{text}` is not a log filter ({err}); write a level (`info`, `debug`) or per-module levels \
             (`info,herald_server=debug`)"
        )
    })
}

/// Installs the log on stderr, filtered by `directives` and written in `format`.
///
/// # Errors
///
/// `directives` is not a filter (named by `source`), or a log is already installed.
pub(crate) fn install(format: LogFormat, directives: &str, source: FilterSource) -> anyhow::Result<()> {
    let filter = filter(directives).with_context(|| match source {
        FilterSource::Flag => "--log".to_owned(),
        FilterSource::File => "the config file's `log`".to_owned(),
        FilterSource::RustLog => "RUST_LOG".to_owned(),
        FilterSource::Default => "the default log filter".to_owned(),
    })?;
    // Colour off even if another crate turns the `ansi` feature on: the log
    // goes to files and collectors as often as to a terminal.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let installed = match format {
        LogFormat::Human => builder.try_init(),
        // The event's fields beside `message` at the top level, where collectors look.
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|err| anyhow!("installing the log: {err}"))
}
