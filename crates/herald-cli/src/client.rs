//! What every client command shares: where the bus is (a server's URL, or a
//! data directory opened in this process), the output format, and a session
//! that closes the bus properly however the command ends.

use std::path::{Path, PathBuf};

use anyhow::bail;
use herald::{Bus, ConnectOptions, ErrorKind};

use crate::{output, signal};

/// Where `herald serve` listens unless told otherwise.
const DEFAULT_URL: &str = "ws://127.0.0.1:7878/v1/ws";

/// Options of every client command (accepted before or after a sub-subcommand).
#[derive(Debug, clap::Args)]
pub(crate) struct ClientArgs {
    /// A running server's WebSocket URL [env: HERALD_URL] [default:
    /// ws://127.0.0.1:7878/v1/ws]
    #[arg(long, global = true, value_name = "URL", conflicts_with = "data_dir")]
    url: Option<String>,
    /// Opens a data directory directly instead, with the embedded engine (not
    /// while a server runs on it) [env: HERALD_DATA_DIR]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The access token for a server that requires one
    #[arg(
        long,
        global = true,
        value_name = "TOKEN",
        env = "HERALD_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Trusts this CA (PEM) for a wss:// server's certificate, beside the system's roots
    #[arg(long, global = true, value_name = "PEM", env = "HERALD_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Prints JSON for scripts: one document, or one line per message
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// Where the bus is.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Server(String),
    Dir(PathBuf),
}

impl ClientArgs {
    /// Opens the bus, runs `work` on it, and closes it (an embedded engine
    /// then saves consumer progress and syncs before the command exits).
    ///
    /// # Errors
    ///
    /// Opening the bus, or what `work` returns.
    pub(crate) async fn session<T>(&self, work: impl AsyncFnOnce(&Bus) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let bus = self.open().await?;
        let result = work(&bus).await;
        // Dropping the last handle of an embedded engine joins its writer
        // thread, which blocks: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(bus)).await;
        result
    }

    /// The flag, else the environment (a flag of either kind beats both
    /// variables), else the default server.
    fn place(&self) -> anyhow::Result<Place> {
        place(
            self.url.clone(),
            self.data_dir.clone(),
            env("HERALD_URL"),
            env("HERALD_DATA_DIR").map(PathBuf::from),
        )
    }

    async fn open(&self) -> anyhow::Result<Bus> {
        match self.place()? {
            Place::Server(url) => connect(url, self.token.clone(), self.ca_file.clone()).await,
            Place::Dir(dir) => open_dir(&dir).await,
        }
    }
}

fn place(
    url: Option<String>,
    dir: Option<PathBuf>,
    env_url: Option<String>,
    env_dir: Option<PathBuf>,
) -> anyhow::Result<Place> {
    Ok(match (url, dir) {
        (Some(url), _) => Place::Server(url),
        (None, Some(dir)) => Place::Dir(dir),
        (None, None) => match (env_url, env_dir) {
            (Some(_), Some(_)) => {
                bail!("both HERALD_URL and HERALD_DATA_DIR are set: unset one, or pass --url or --data-dir")
            }
            (Some(url), None) => Place::Server(url),
            (None, Some(dir)) => Place::Dir(dir),
            (None, None) => Place::Server(DEFAULT_URL.to_owned()),
        },
    })
}

/// An environment variable that is set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

async fn connect(url: String, token: Option<String>, ca_file: Option<PathBuf>) -> anyhow::Result<Bus> {
    let mut options = ConnectOptions::new(url);
    if let Some(token) = token {
        options = options.token(token);
    }
    if let Some(ca_file) = ca_file {
        options = options.ca_file(ca_file);
    }
    match Bus::connect_with(options).await {
        Ok(bus) => Ok(bus),
        Err(err) if err.kind() == ErrorKind::Closed => Err(anyhow::Error::from(err)
            .context("no Herald server answered (start one with `herald serve`, or use --data-dir)")),
        Err(err) => Err(err.into()),
    }
}

async fn open_dir(dir: &Path) -> anyhow::Result<Bus> {
    // Opening creates a missing directory; a mistyped path should not.
    if !dir.is_dir() {
        bail!("the data directory {} does not exist", dir.display());
    }
    Bus::open(dir).await.map_err(|err| {
        let locked = is_locked(&err);
        let err = anyhow::Error::from(err);
        if locked {
            err.context(format!(
                "the data directory {} is in use by another process: is a server running on it? use --url",
                dir.display()
            ))
        } else {
            err.context(format!("opening the data directory {}", dir.display()))
        }
    })
}

/// Whether opening failed because another process holds the database's lock.
fn is_locked(err: &herald::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = cause {
        if matches!(
            current.downcast_ref::<redb::DatabaseError>(),
            Some(redb::DatabaseError::DatabaseAlreadyOpen)
        ) {
            return true;
        }
        cause = current.source();
    }
    false
}

/// Runs `work` until it ends or the user interrupts (Ctrl-C, or SIGTERM);
/// an interrupt is a normal end, so the session still closes the bus.
///
/// # Errors
///
/// What `work` returns.
pub(crate) async fn until_interrupted(work: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        result = work => result,
        () = signal::interrupted() => {
            output::note("interrupted");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn flags_beat_the_environment_which_beats_the_default() {
        let url = || Some("ws://flag/v1/ws".to_owned());
        let dir = || Some(PathBuf::from("/flag"));
        let env_url = || Some("ws://env/v1/ws".to_owned());
        let env_dir = || Some(PathBuf::from("/env"));
        assert_eq!(
            place(url(), None, None, env_dir()).unwrap(),
            Place::Server("ws://flag/v1/ws".into())
        );
        assert_eq!(place(None, dir(), env_url(), None).unwrap(), Place::Dir("/flag".into()));
        assert_eq!(place(None, None, None, env_dir()).unwrap(), Place::Dir("/env".into()));
        assert_eq!(
            place(None, None, env_url(), None).unwrap(),
            Place::Server("ws://env/v1/ws".into())
        );
        assert_eq!(
            place(None, None, None, None).unwrap(),
            Place::Server(DEFAULT_URL.into())
        );
        assert!(place(None, None, env_url(), env_dir()).is_err());
    }
}
