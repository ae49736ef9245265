//! Requests to stop, shared by `serve` and the client commands that run
//! until interrupted.

/// What asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Ctrl-C (SIGINT).
    Interrupt,
    /// SIGTERM: a supervisor's stop.
    Terminate,
}

impl Stop {
    /// The exit status of a process this signal ends at once: 128 plus the
    /// signal's number, as shells report it (130, 143).
    pub(crate) fn status(self) -> i32 {
        match self {
            Stop::Interrupt => 130,
            Stop::Terminate => 143,
        }
    }

    /// The name a person knows it by.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Stop::Interrupt => "Ctrl-C",
            Stop::Terminate => "SIGTERM",
        }
    }
}

/// Stop requests as they come. The handlers are installed once, when this is
/// made, and stay: a second request right after the first is counted, not
/// lost between two listeners.
pub(crate) struct Stops {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Stops {
    /// Starts listening for Ctrl-C and, where there is one, SIGTERM.
    pub(crate) fn listen() -> Stops {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signals =
                signal(SignalKind::interrupt()).and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
            Stops { signals: signals.ok() }
        }
        #[cfg(not(unix))]
        Stops {}
    }

    /// The next request to stop.
    pub(crate) async fn next(&mut self) -> Stop {
        #[cfg(unix)]
        if let Some((interrupt, terminate)) = &mut self.signals {
            return tokio::select! {
                _ = interrupt.recv() => Stop::Interrupt,
                _ = terminate.recv() => Stop::Terminate,
            };
        }
        // Without our handlers, Ctrl-C still ends the process the ordinary way.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
        Stop::Interrupt
    }
}

/// Resolves on the first Ctrl-C or SIGTERM.
pub(crate) async fn interrupted() {
    Stops::listen().next().await;
}
