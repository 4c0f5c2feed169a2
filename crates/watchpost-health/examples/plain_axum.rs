//! A plain axum app serving the health endpoints, with no other Watchpost crate.
//!
//! Run with `cargo run -p watchpost-health --example plain_axum --features disk,memory`, then
//! `curl -i localhost:3000/health/ready?verbose` and `curl -i localhost:3000/health/detailed`.
//! Set `PORT` to listen elsewhere. Ctrl-C flips readiness to fail, then stops after a drain.

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use watchpost_health::{Check, CheckOutcome, HealthConfig, HealthRegistry, ShowDetails, check_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let config = HealthConfig::new("example")
        .store_backend("memory")
        .version(env!("CARGO_PKG_VERSION"))
        .description("watchpost-health in a plain axum app")
        // A demo shows everything; real services keep the default (root principals only).
        .show_details(ShowDetails::Always);
    let health = HealthRegistry::new(config);

    health.register(
        Check::new(
            "queue",
            check_fn(|| async { CheckOutcome::pass().observe("depth", 3, None) }),
        )
        .timeout(Duration::from_millis(500))
        .cache_for(Duration::from_secs(2)),
    )?;
    #[cfg(feature = "disk")]
    health.register(
        Check::new("disk", watchpost_health::checks::DiskCheck::new(".")).non_critical(),
    )?;
    #[cfg(feature = "memory")]
    health.register(
        Check::new("memory", watchpost_health::checks::MemoryCheck::new()).non_critical(),
    )?;

    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .merge(health.router());

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    // Start-up is complete once we listen.
    health.mark_started();
    let shutdown_health = health.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Readiness fails first, so the load balancer stops routing to us, then we drain.
            shutdown_health.mark_shutting_down();
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
        .await?;
    health.shutdown().await;
    Ok(())
}
