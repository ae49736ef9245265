//! The request to stop, shared by `serve` and the client commands that run
//! until interrupted.

/// Resolves on Ctrl-C, or on SIGTERM (a supervisor's stop) where there is one.
pub(crate) async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    // Without a handler, Ctrl-C still ends the process the ordinary way.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
