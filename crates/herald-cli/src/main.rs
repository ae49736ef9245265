//! `herald`: Herald's command line.
//!
//! `herald serve` runs the server on a data directory: the WebSocket protocol
//! at `/v1/ws` (docs/protocol.md) and `/healthz`.

mod serve;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Token(args) => serve::new_token(&args),
    }
}

