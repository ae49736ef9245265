//! `herald`: Herald's command line.
//!
//! `herald serve` runs the server on a data directory (docs/server.md): the
//! WebSocket protocol at `/v1/ws`, the HTTP API under `/v1`, `/metrics` and
//! `/healthz`; `herald token` makes access tokens for it. The client commands (`pub`,
//! `sub`, `tail`, `consume`, `streams`, `consumers`, `dlq`) work on a running
//! server (`--url`) or open a data directory directly (`--data-dir`); `--json`
//! makes their output JSON for scripts.

mod client;
mod consume;
mod consumers;
mod dlq;
mod history;
mod log;
mod output;
mod publish;
mod serve;
mod signal;
mod streams;
mod sub;
mod table;
mod tail;
mod units;

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Herald: a durable event bus.
#[derive(Debug, Parser)]
#[command(name = "herald", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves a data directory over WebSocket and HTTP.
    Serve(serve::Serve),
    /// Makes a new access token and prints the lines for the config file.
    Token(serve::NewToken),
    /// Publishes a message and prints its ack (stream, seq, duplicate).
    Pub(publish::Pub),
    /// Prints the messages matching a pattern as they arrive.
    Sub(sub::Sub),
    /// Prints a stream's messages from a seq, a time or its last N; --follow for new ones.
    Tail(tail::Tail),
    /// Works through a durable consumer: prints each delivery and acks it.
    Consume(consume::Consume),
    /// Lists, shows, creates, deletes and purges streams.
    Streams(streams::Streams),
    /// Lists, shows, creates, deletes and resets durable consumers.
    Consumers(consumers::Consumers),
    /// Lists, replays and purges a consumer's dead letters.
    Dlq(dlq::Dlq),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output left (`herald tail … | head`): nothing failed.
        Err(err) if output::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            output::note(format_args!("herald: {}", herald_core::cause_chain(err.as_ref())));
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Token(args) => serve::new_token(&args),
        Command::Pub(args) => runtime.block_on(publish::run(args)),
        Command::Sub(args) => runtime.block_on(sub::run(args)),
        Command::Tail(args) => runtime.block_on(tail::run(args)),
        Command::Consume(args) => runtime.block_on(consume::run(args)),
        Command::Streams(args) => runtime.block_on(streams::run(args)),
        Command::Consumers(args) => runtime.block_on(consumers::run(args)),
        Command::Dlq(args) => runtime.block_on(dlq::run(args)),
    }
}
