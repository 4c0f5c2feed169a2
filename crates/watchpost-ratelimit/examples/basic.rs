//! A plain axum app limited by watchpost-ratelimit alone: 5 requests per 10 s per client IP,
//! `/health` exempt. Run with `cargo run -p watchpost-ratelimit --example basic`, then
//! `curl -i localhost:3000/` six times.
#![allow(clippy::print_stdout)] // an example that tells the user where it listens

use std::net::SocketAddr;
use std::time::Duration;

use axum::{Router, routing::get};
use watchpost_ratelimit::{RateLimiter, requests_per};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let limiter = RateLimiter::builder()
        .policies([requests_per(5, Duration::from_secs(10))])
        .on_deny(|e| {
            println!(
                "denied {} by policy {} on {:?}",
                e.key,
                e.policy.name(),
                e.route
            )
        })
        .build()?;
    let mut registry = prometheus_client::registry::Registry::default();
    limiter.register_metrics(&mut registry);

    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/health", get(|| async { "ok" }))
        .layer(limiter.layer());
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
