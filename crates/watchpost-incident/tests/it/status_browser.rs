//! `/status` rendered in headless Chromium (Debian `chromium`): the open incident, its latest update
//! and the component states appear in the DOM without JavaScript or external assets.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use watchpost_core::Severity;
use watchpost_incident::engine::{IncidentOp, NewIncident};
use watchpost_incident::model::{Actor, UpdateStatus};
use watchpost_incident::policy::{LabelMatcher, MaintenanceWindow};
use watchpost_incident::store::MemoryStore;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_headless_chromium() {
    let chromium = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("chromium"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("chromium is not on PATH; run cargo xtask ci, which installs chromium")
        });
    let now = Utc::now();
    let mut cfg = config();
    cfg.status_page_name = "Acme status".into();
    cfg.policy.maintenance = vec![MaintenanceWindow {
        name: "Queue upgrade".into(),
        matchers: vec![LabelMatcher::eq("service", "queue")],
        starts_at: now - chrono::Duration::hours(1),
        ends_at: now + chrono::Duration::hours(1),
        service: Some("queue".into()),
    }];
    let svc = IncidentService::builder(Arc::new(MemoryStore::new()))
        .config(cfg)
        .build();
    let c = svc
        .ingest(
            delivery(vec![firing(
                "ApiDown",
                "critical",
                "api",
                now - chrono::Duration::minutes(3),
            )]),
            None,
        )
        .await
        .unwrap();
    let actor = Actor::key(&principal());
    svc.apply(
        &c.incidents[0].id,
        IncidentOp::Update {
            status: UpdateStatus::Identified,
            note: "Load balancer <misconfigured>".into(),
        },
        actor.clone(),
        None,
    )
    .await
    .unwrap();
    svc.create(
        NewIncident {
            title: "Slow database".into(),
            description: None,
            severity: Some(Severity::Warning),
            priority: None,
            service: Some("db".into()),
            runbook_url: None,
        },
        actor,
        None,
    )
    .await
    .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, watchpost_incident::router(svc))
            .await
            .unwrap()
    });

    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}/status");
    let run = tokio::task::spawn_blocking(move || {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(&url)
            .stdin(Stdio::null())
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(45), run)
        .await
        .expect("chromium took too long")
        .unwrap()
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("<title>Acme status</title>"),
        "chromium printed no status page ({}): {dom}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dom.contains("data-indicator=\"critical\"") && dom.contains("Major System Outage"));
    assert!(dom.contains("ApiDown is failing"));
    assert!(
        dom.contains("Load balancer &lt;misconfigured&gt;"),
        "the latest update appears, escaped"
    );
    for (component, status) in [
        ("api", "major_outage"),
        ("db", "degraded_performance"),
        ("queue", "under_maintenance"),
    ] {
        let needle = format!("data-component=\"{component}\"");
        let row = dom
            .split(&needle)
            .nth(1)
            .unwrap_or_else(|| panic!("component {component} missing"));
        assert!(
            row.split("</tr>")
                .next()
                .unwrap()
                .contains(&format!("data-status=\"{status}\"")),
            "{component} should be {status}"
        );
    }
    assert!(dom.contains("Past 90 days"));
    assert_eq!(
        dom.matches("<li class=").count(),
        90,
        "one cell per day of history"
    );
}
