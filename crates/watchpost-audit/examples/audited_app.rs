//! A plain axum app with the audit layer, the audit endpoints and a JSON-lines file sink.
//!
//! Run with `cargo run -p watchpost-audit --example audited_app`, then:
//! `curl -XPOST localhost:3000/things -H 'x-demo-key: a'` and
//! `curl localhost:3000/audit/events -H 'x-demo-key: root'`.

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use watchpost_audit::{AuditConfig, AuditLayer, Auditor, FileSink, FileSinkConfig, MemoryStore};
use watchpost_core::{Principal, Role, SystemClock};

/// Stands in for real authentication: `x-demo-key: root` or `x-demo-key: <tenant>`.
async fn demo_auth(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let key = req
        .headers()
        .get("x-demo-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match key.as_deref() {
        Some("root") => {
            req.extensions_mut()
                .insert(Principal::new("root", "root", None, Role::Root));
        }
        Some(tenant) => {
            req.extensions_mut().insert(Principal::new(
                format!("key-{tenant}"),
                "demo",
                Some(tenant.to_owned()),
                Role::Tenant,
            ));
        }
        None => {}
    }
    next.run(req).await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data_dir = std::env::temp_dir().join("watchpost-audit-example");
    let files = FileSink::new(
        FileSinkConfig {
            dir: data_dir.join("audit-files"),
            max_file_bytes: 64 * 1024 * 1024,
            retention_days: 30,
        },
        SystemClock::shared(),
    )?;
    let auditor = Auditor::builder(Arc::new(MemoryStore::new()))
        .config(AuditConfig {
            data_dir: Some(data_dir),
            ..AuditConfig::default()
        })
        .sink(Arc::new(files))
        .start()?;

    let app = Router::new()
        .route(
            "/things",
            post(|| async { (axum::http::StatusCode::CREATED, "made") }),
        )
        .layer(AuditLayer::new(auditor.clone()))
        .merge(watchpost_audit::router(auditor.clone()))
        .layer(axum::middleware::from_fn(demo_auth));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    tracing::info!("listening on http://127.0.0.1:3000");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    auditor.shutdown().await;
    Ok(())
}
