//! Running the server: open and migrate the stores, bind, serve, and shut down gracefully
//! (stop accepting, drain in-flight requests for up to the grace period, flush, return).

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;

use crate::app::{AppState, router};
use crate::config::{Config, ConfigError};
use crate::store::{StoreError, Stores};

/// Why the server could not start (exit status 2) or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A store could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listen address cannot be bound.
    #[error("cannot listen on WATCHPOST_LISTEN={addr}: {reason}; choose a free local address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// Serving failed.
    #[error("the server failed: {0}")]
    Serve(String),
}

type Flush = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// What runs when a shutdown signal arrives (before the drain) and after the drain (flushes).
#[derive(Default)]
pub struct Lifecycle {
    on_signal: Vec<Box<dyn FnOnce() + Send>>,
    flush: Vec<Flush>,
    /// After the signal hooks ran, how long connections are still accepted (readiness failing)
    /// before the listener closes and the drain starts.
    pub shutdown_delay: Duration,
}

impl std::fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lifecycle")
            .field("on_signal", &self.on_signal.len())
            .field("flush", &self.flush.len())
            .field("shutdown_delay", &self.shutdown_delay)
            .finish()
    }
}

impl Lifecycle {
    /// Runs `f` as soon as the shutdown signal arrives, before draining (e.g. fail readiness).
    pub fn on_signal(&mut self, f: impl FnOnce() + Send + 'static) {
        self.on_signal.push(Box::new(f));
    }

    /// Runs `f` after the drain (e.g. flush queues), in registration order.
    pub fn on_flush<F, Fut>(&mut self, f: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.flush.push(Box::new(move || Box::pin(f())));
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown signal received"),
        () = term => tracing::info!(signal = "SIGTERM", "shutdown signal received"),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; runs the lifecycle's signal hooks, waits its
/// shutdown delay, then stops accepting (new connections are refused), drains for at most `grace`
/// and runs the flushes.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    grace: Duration,
    mut lifecycle: Lifecycle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StartupError> {
    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel::<()>();
    let on_signal = std::mem::take(&mut lifecycle.on_signal);
    let delay = lifecycle.shutdown_delay;
    let graceful = async move {
        shutdown.await;
        for f in on_signal {
            f();
        }
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "readiness is failing; still accepting connections for the shutdown delay"
            );
            tokio::time::sleep(delay).await;
        }
        let _ = signalled_tx.send(());
    };
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(graceful)
    .into_future();
    let mut server = tokio::spawn(server);
    // After a signal the server can finish (nothing to drain) before this task looks: the signal
    // is checked first, so the drain log and the flushes below run whenever a signal came. A
    // closed channel means the server ended on its own (an error), without a signal.
    tokio::select! {
        biased;
        Ok(()) = signalled_rx => {}
        finished = &mut server => {
            return finished
                .map_err(|e| StartupError::Serve(e.to_string()))?
                .map_err(|e| StartupError::Serve(e.to_string()));
        }
    }
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "draining in-flight requests"
    );
    match tokio::time::timeout(grace, &mut server).await {
        Ok(Ok(Ok(()))) => tracing::info!("drained"),
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "server error while draining"),
        Ok(Err(e)) => tracing::error!(error = %e, "server task failed while draining"),
        Err(_) => {
            tracing::warn!("drain deadline passed; closing the remaining connections");
            server.abort();
        }
    }
    for flush in lifecycle.flush {
        flush().await;
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// Opens and migrates the stores for `config`.
pub async fn open_stores(config: &Config) -> Result<Stores, StartupError> {
    let stores = Stores::open(config).await?;
    stores.migrate().await?;
    Ok(stores)
}

/// How long span export may take to flush at shutdown.
const TELEMETRY_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

/// The whole `watchpost serve`: stores, state, router, listener, signals; `telemetry` is flushed at the end.
pub async fn run(
    config: Config,
    telemetry: watchpost_correlation::Telemetry,
) -> Result<(), StartupError> {
    let stores = open_stores(&config).await?;
    let listen = config.listen;
    let grace = config.shutdown_grace;
    let backend = stores.kind.as_str();
    let delay = config.shutdown_delay;
    let state = AppState::with_propagators(
        config,
        stores,
        watchpost_core::SystemClock::shared(),
        telemetry.propagators(),
    )?;
    crate::wiring::metrics::export(&state.metrics, |registry| {
        telemetry.register_metrics(registry)
    });
    if !state.auth.has_root_key() && !state.keys.has_active_root().await.unwrap_or(false) {
        tracing::warn!(
            "no root key: root-only endpoints answer 401 to everyone; set WATCHPOST_ROOT_API_KEY or run `watchpost keys create --role root`"
        );
    }
    if let Err(e) = state.ratelimit.connect().await {
        // Decisions follow the configured failure mode until Redis answers; the health check shows it.
        tracing::warn!(error = %e, "cannot reach Redis for shared rate limits yet");
    }
    let stop_reconciler = tokio_util::sync::CancellationToken::new();
    let reconciler = crate::wiring::incident::start_reconciler(
        &state.config,
        &state.incidents,
        stop_reconciler.clone(),
    );
    let worker = state
        .incident_worker
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let health = state.health.clone();
    let auditor = state.auditor.clone();
    let app = router(state);
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| StartupError::Bind {
            addr: listen,
            reason: e.to_string(),
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| StartupError::Serve(e.to_string()))?;
    let mut lifecycle = Lifecycle {
        shutdown_delay: delay,
        ..Lifecycle::default()
    };
    let on_signal = health.clone();
    lifecycle.on_signal(move || on_signal.mark_shutting_down());
    let flush = health.clone();
    lifecycle.on_flush(move || async move { flush.shutdown().await });
    // Notifications: stop taking new work once HTTP is drained; what is in the outbox stays for the next start.
    lifecycle.on_flush(move || async move {
        stop_reconciler.cancel();
        if let Some(reconciler) = reconciler {
            let _ = reconciler.await;
        }
        if let Some(worker) = worker {
            worker.shutdown().await;
        }
    });
    // Writes what is queued, signs a final checkpoint, tries a last spool replay.
    lifecycle.on_flush(move || async move { auditor.shutdown().await });
    lifecycle.on_flush(move || async move {
        if let Err(e) = telemetry.shutdown(TELEMETRY_FLUSH_DEADLINE).await {
            tracing::warn!(error = %e, "span export did not flush before its deadline");
        }
    });
    // Migrations ran in `open_stores`: from here on the server is ready.
    health.mark_started();
    tracing::info!(address = %local, store = backend, version = env!("CARGO_PKG_VERSION"), "watchpost listening");
    serve(listener, app, grace, lifecycle, shutdown_signal()).await
}
