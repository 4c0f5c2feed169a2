//! A plain axum app that mounts the incident inbox (webhook, API, status page) with an in-memory
//! store and a console-free setup; run it and point Alertmanager at `/webhooks/alertmanager`.
//!
//! `cargo run -p watchpost-incident --example incident_inbox` then open <http://127.0.0.1:4000/status>.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use watchpost_core::{Principal, Role};
use watchpost_incident::store::MemoryStore;
use watchpost_incident::worker::{OutboxWorker, OutboxWorkerConfig};
use watchpost_incident::{IncidentConfig, IncidentService};

/// Stand-in authentication: every request with `X-API-Key: demo` is a tenant principal.
async fn demo_auth(mut request: Request, next: Next) -> axum::response::Response {
    if request
        .headers()
        .get("x-api-key")
        .is_some_and(|v| v == "demo")
    {
        request
            .extensions_mut()
            .insert(Principal::new("demo", "demo key", None, Role::Tenant));
    }
    next.run(request).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let service = IncidentService::builder(Arc::new(MemoryStore::new()))
        .config(IncidentConfig {
            alertmanager_token: Some(
                std::env::var("WATCHPOST_ALERTMANAGER_TOKEN")
                    .unwrap_or_else(|_| "change-me".into()),
            ),
            public_url: Some("http://127.0.0.1:4000".into()),
            ..IncidentConfig::default()
        })
        .build();
    // Without notifiers configured, entries are marked failed with a clear message; add
    // `SlackNotifier`, `PagerDutyNotifier` or `WebhookNotifier` here to deliver them.
    let worker = OutboxWorker::new(service.clone(), OutboxWorkerConfig::default()).spawn();
    let app = watchpost_incident::router(service).layer(axum::middleware::from_fn(demo_auth));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:4000").await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    worker.shutdown().await;
    Ok(())
}
