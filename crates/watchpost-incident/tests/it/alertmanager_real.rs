//! The real Alertmanager 0.25 (Debian `prometheus-alertmanager`) pointed at the router on a real
//! socket: fire, group, resolve and `max_alerts` truncation. The payloads it sends are compared
//! with the golden files in `tests/fixtures/alertmanager/` (set `WATCHPOST_UPDATE_GOLDEN=1` to
//! rewrite them), and the golden files plus hand-made fixtures for newer fields are replayed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;
use watchpost_incident::model::IncidentStatus;
use watchpost_incident::store::{IncidentQuery, IncidentStore, MemoryStore};

use super::*;

fn find_binary(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} is not on PATH; run cargo xtask ci, which installs {package}")
        })
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alertmanager")
}

/// The shape of a payload: its keys, and the keys of its first alert.
fn shape(v: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let keys = |o: &serde_json::Value| {
        let mut k: Vec<String> = o
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    (keys(v), keys(&v["alerts"][0]))
}

/// Replaces values that differ between runs (times, ports, fingerprints stay: they depend only on labels).
fn normalise(mut v: serde_json::Value) -> serde_json::Value {
    v["externalURL"] = "http://alertmanager.example:9093".into();
    if let Some(alerts) = v["alerts"].as_array_mut() {
        alerts.sort_by_key(|a| a["fingerprint"].as_str().unwrap_or_default().to_owned());
        for a in alerts {
            a["startsAt"] = "2026-01-01T00:00:00Z".into();
            if a["status"] == "resolved" {
                a["endsAt"] = "2026-01-01T00:05:00Z".into();
            }
        }
    }
    v
}

async fn post_alerts(client: &reqwest::Client, am: &str, alerts: serde_json::Value) {
    let r = client
        .post(format!("{am}/api/v2/alerts"))
        .json(&alerts)
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "Alertmanager refused alerts: {}",
        r.status()
    );
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_alertmanager_opens_groups_resolves_and_truncates() {
    let binary = find_binary("prometheus-alertmanager", "prometheus-alertmanager");
    let store = Arc::new(MemoryStore::new());
    let svc = IncidentService::builder(store.clone())
        .config(config())
        .build();
    let captured: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let keep = captured.clone();
    let app = watchpost_incident::router(svc).layer(axum::middleware::from_fn(
        move |req: Request<Body>, next: axum::middleware::Next| {
            let keep = keep.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body.collect().await.unwrap().to_bytes();
                if let Ok(v) = serde_json::from_slice(&bytes) {
                    keep.lock().unwrap().push(v);
                }
                next.run(Request::from_parts(parts, Body::from(bytes)))
                    .await
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let am_addr = watchpost_test_support::free_addr();
    let hook = |max: u32| {
        format!(
            "    webhook_configs:\n      - url: http://{addr}/webhooks/alertmanager\n        send_resolved: true\n        max_alerts: {max}\n        http_config:\n          authorization:\n            credentials: {TOKEN}\n"
        )
    };
    let config_yaml = format!(
        "route:\n  receiver: watchpost\n  group_by: ['alertname']\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n  routes:\n    - receiver: watchpost-max\n      matchers: ['alertname=\"Truncated\"']\nreceivers:\n  - name: watchpost\n{}  - name: watchpost-max\n{}",
        hook(0),
        hook(2)
    );
    std::fs::write(dir.path().join("am.yml"), config_yaml).unwrap();
    let _am = Killed(
        Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prometheus-alertmanager"),
    );
    assert!(
        watchpost_test_support::wait_for_port(am_addr, Duration::from_secs(15)).await,
        "Alertmanager did not start"
    );
    let am = format!("http://{am_addr}");
    let client = reqwest::Client::new();
    let alert = |name: &str, instance: &str, ends: Option<chrono::DateTime<chrono::Utc>>| {
        let mut a = serde_json::json!({
            "labels": {"alertname": name, "instance": instance, "severity": "critical", "service": "api"},
            "annotations": {"summary": format!("{name} on {instance}"), "runbook_url": "https://runbooks.example/api"},
            "generatorURL": "http://prometheus.example/graph",
            "startsAt": (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
        });
        if let Some(e) = ends {
            a["endsAt"] = e.to_rfc3339().into();
        }
        a
    };

    // Fire, and a group of two.
    post_alerts(
        &client,
        &am,
        serde_json::json!([alert("ApiDown", "a", None)]),
    )
    .await;
    post_alerts(
        &client,
        &am,
        serde_json::json!([alert("DbDown", "db1", None), alert("DbDown", "db2", None)]),
    )
    .await;
    let open = wait_for("three incidents", async || {
        let items = store
            .list(IncidentQuery {
                status: Some(IncidentStatus::Triggered),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .items;
        (items.len() == 3).then_some(items)
    })
    .await;
    assert!(
        open.iter()
            .all(|i| i.service.as_deref() == Some("api") && i.runbook_url.is_some())
    );

    // Resolve ApiDown.
    let mut resolved_alert = alert("ApiDown", "a", Some(Utc::now()));
    resolved_alert["startsAt"] = open
        .iter()
        .find(|i| i.title == "ApiDown on a")
        .unwrap()
        .started_at
        .to_rfc3339()
        .into();
    post_alerts(&client, &am, serde_json::json!([resolved_alert])).await;
    wait_for("ApiDown resolved", async || {
        let items = store
            .list(IncidentQuery {
                status: Some(IncidentStatus::Resolved),
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .items;
        (items.len() == 1 && items[0].title == "ApiDown on a").then_some(())
    })
    .await;

    // max_alerts truncation: three alerts, two delivered, the incidents marked partial.
    post_alerts(
        &client,
        &am,
        serde_json::json!([
            alert("Truncated", "t1", None),
            alert("Truncated", "t2", None),
            alert("Truncated", "t3", None)
        ]),
    )
    .await;
    let partial = wait_for("partial incidents", async || {
        let items = store
            .list(IncidentQuery {
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .items;
        let p: Vec<_> = items.into_iter().filter(|i| i.partial).collect();
        (p.len() == 2).then_some(p)
    })
    .await;
    assert!(partial.iter().all(|i| i.title.starts_with("Truncated")));

    // Every delivery was authenticated, parsed and applied exactly once per alert event.
    let payloads = captured.lock().unwrap().clone();
    let find = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        payloads
            .iter()
            .find(|p| pred(p))
            .cloned()
            .unwrap_or_else(|| panic!("no such payload in {payloads:#?}"))
    };
    let goldens = [
        (
            "fire.json",
            find(&|p| p["groupLabels"]["alertname"] == "ApiDown" && p["status"] == "firing"),
        ),
        (
            "group.json",
            find(&|p| {
                p["groupLabels"]["alertname"] == "DbDown"
                    && p["alerts"].as_array().unwrap().len() == 2
            }),
        ),
        (
            "resolve.json",
            find(&|p| p["groupLabels"]["alertname"] == "ApiDown" && p["status"] == "resolved"),
        ),
        ("truncated.json", find(&|p| p["truncatedAlerts"] == 1)),
    ];
    assert_eq!(goldens[3].1["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(goldens[0].1["version"], "4");
    for (name, payload) in goldens {
        let path = fixtures().join(name);
        let payload = normalise(payload);
        if std::env::var_os("WATCHPOST_UPDATE_GOLDEN").is_some() || !path.exists() {
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&payload).unwrap() + "\n",
            )
            .unwrap();
        }
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            shape(&payload),
            shape(&golden),
            "{name}: Alertmanager's payload shape changed"
        );
        assert_eq!(
            payload["alerts"].as_array().map(|a| a.len()),
            golden["alerts"].as_array().map(|a| a.len()),
            "{name}"
        );
        // Fingerprints depend only on labels: ours must match Alertmanager's.
        for a in payload["alerts"].as_array().unwrap() {
            let labels: watchpost_incident::alertmanager::LabelSet =
                serde_json::from_value(a["labels"].clone()).unwrap();
            assert_eq!(
                a["fingerprint"].as_str().unwrap(),
                watchpost_incident::alertmanager::fingerprint(&labels)
            );
        }
    }
}

/// The golden payloads and the hand-made fixtures replayed through the router.
#[tokio::test]
async fn golden_and_handmade_fixtures_are_accepted() {
    let store = Arc::new(MemoryStore::new());
    let (svc, _) = service_with(store.clone(), config());
    let app = watchpost_incident::router(svc);
    let mut names: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(
        names.len() >= 5,
        "golden files missing from {}: run the real Alertmanager test",
        fixtures().display()
    );
    for path in names {
        let body = std::fs::read(&path).unwrap();
        for _ in 0..2 {
            let r = app
                .clone()
                .oneshot(
                    Request::post("/webhooks/alertmanager")
                        .header("authorization", format!("Bearer {TOKEN}"))
                        .header("content-type", "application/json")
                        .body(Body::from(body.clone()))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert!(
                r.status().is_success(),
                "{}: {}",
                path.display(),
                r.status()
            );
        }
    }
    let items = store
        .list(IncidentQuery {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert!(
        items.iter().any(|i| i.partial),
        "the truncated payload marks its incident partial"
    );
    assert!(
        items.iter().any(|i| i.title.contains("newer")),
        "the hand-made newer payload opened an incident"
    );
    assert!(items.iter().any(|i| i.status == IncidentStatus::Resolved));
}
