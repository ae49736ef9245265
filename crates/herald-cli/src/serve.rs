//! `herald serve`: the server on a data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};

#[derive(Debug, clap::Args)]
pub(crate) struct Serve {
    /// The data directory (created if missing).
    #[arg(long, default_value = "./herald-data")]
    data_dir: PathBuf,
    /// The address to listen on. Only loopback addresses are allowed until
    /// access tokens are configured.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// The largest payload a publish may carry, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_payload: usize,
    /// WebSocket sessions open at once, at most.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Subscriptions and responders per connection, at most.
    #[arg(long, default_value_t = 1024)]
    max_subscriptions: usize,
}

pub(crate) async fn run(serve: Serve) -> anyhow::Result<()> {
    if !serve.listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {} without access tokens: anyone who can reach it could read and write \
             every stream; listen on a loopback address such as 127.0.0.1",
            serve.listen
        );
    }
    let bus = herald::Bus::open(&serve.data_dir)
        .await
        .with_context(|| format!("opening the data directory {}", serve.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(serve.listen)
        .await
        .with_context(|| format!("listening on {}", serve.listen))?;
    let addr = listener.local_addr().context("the bound address")?;
    // Scripts and tests read this line to find the port (with `--listen 127.0.0.1:0`).
    say(&format!(
        "herald listening on ws://{addr}/v1/ws (data: {})",
        serve.data_dir.display()
    ));
    let limits = herald_server::Limits::default()
        .max_payload(serve.max_payload)
        .max_connections(serve.max_connections)
        .max_subscriptions(serve.max_subscriptions);
    herald_server::Server::new(bus)
        .limits(limits)
        .serve(listener, shutdown_signal())
        .await
        .context("serving")?;
    say("herald stopped");
    Ok(())
}

/// A status line on stdout; a closed stdout (a supervisor gone) is no reason to fail.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Ctrl-C or SIGTERM: stop taking connections and let the ones in flight finish.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
