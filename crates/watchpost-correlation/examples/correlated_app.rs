//! A plain axum app with request ids, trace context, JSON request logs, OTLP export (when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set) and `GET /errors`, using no other Watchpost crate.
//!
//! Run: `cargo run -p watchpost-correlation --example correlated_app`, then
//! `curl -i localhost:3000/hello -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'`
//! and `curl -i localhost:3000/panic`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use watchpost_correlation::{CorrelationConfig, CorrelationLayer, LoggingConfig, OtelConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logging = LoggingConfig::from_env()?;
    let otel = OtelConfig::from_env("correlated-app")?;
    let telemetry = watchpost_correlation::init(&logging, &otel)?;

    let correlation = CorrelationLayer::new(CorrelationConfig {
        propagators: telemetry.propagators(),
        return_traceparent: true,
        ..CorrelationConfig::default()
    });
    let app = Router::new()
        .route(
            "/hello",
            get(|| async {
                tracing::info!("saying hello");
                "hello\n"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if std::env::var_os("NEVER_SET_THIS").is_none() {
                    panic!("this handler always panics");
                }
                "unreachable\n"
            }),
        )
        .merge(correlation.router())
        .layer(correlation.clone());

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    telemetry.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}
