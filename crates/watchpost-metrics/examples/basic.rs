//! A plain axum app with Watchpost's HTTP metrics, an application counter and `/metrics`.
//!
//! `cargo run -p watchpost-metrics --example basic`, then
//! `curl localhost:3000/orders/7` and `curl localhost:3000/metrics`
//! (or `curl -H 'accept: application/openmetrics-text' localhost:3000/metrics`).
//! `PORT` changes the port; `METRICS_TOKEN` protects `/metrics` with a bearer token.

use axum::Router;
use axum::extract::Path;
use axum::routing::get;
use watchpost_metrics::{BuildInfo, Metrics, MetricsConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics = Metrics::new(MetricsConfig {
        token: std::env::var("METRICS_TOKEN").ok(),
        build_info: Some(BuildInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision: "unknown".to_owned(),
            rustc: "unknown".to_owned(),
        }),
        ..MetricsConfig::default()
    })?;
    let orders =
        metrics
            .registry()
            .counter("shop_orders", "Orders looked up, by kind.", ["kind"])?;
    let db = metrics.db().clone();

    let app = Router::new()
        .route(
            "/orders/{id}",
            get(move |Path(id): Path<u64>| {
                let orders = orders.clone();
                let db = db.clone();
                async move {
                    orders.inc([if id % 2 == 0 { "even" } else { "odd" }]);
                    db.time("select", "orders", async { format!("order {id}") })
                        .await
                }
            }),
        )
        .fallback(|| async { http::StatusCode::NOT_FOUND })
        .layer(metrics.layer())
        .merge(metrics.router());

    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving");
    axum::serve(listener, app).await?;
    Ok::<(), Box<dyn std::error::Error>>(())
}
