//! Notifiers against local Slack, PagerDuty, SMTP and webhook receivers that check every payload,
//! with retries on 5xx and 429, no retry on other 4xx, per-destination spacing and the header hook.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use watchpost_incident::model::{Channel, TimelineEvent};
use watchpost_incident::notify::{
    PagerDutyNotifier, SIGNATURE_HEADER, SlackNotifier, SmtpNotifier, WebhookNotifier, sign,
};
use watchpost_incident::outbox::{Origin, OutboxState};
use watchpost_incident::policy::Routing;
use watchpost_incident::store::{IncidentStore, MemoryStore};
use watchpost_incident::worker::{OutboxWorker, OutboxWorkerConfig};

use super::*;

#[derive(Clone, Default)]
struct Receiver {
    /// Statuses to answer, in order; 200 once exhausted.
    script: Arc<Mutex<VecDeque<u16>>>,
    /// (arrival, headers, body) of every request.
    seen: Arc<Mutex<Vec<(Instant, HeaderMap, serde_json::Value)>>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, HeaderMap) {
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let mut h = headers.clone();
    h.insert(
        "x-raw-body-sha",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body))
            .parse()
            .unwrap(),
    );
    if let Some(sig) = headers.get(SIGNATURE_HEADER) {
        // Recompute the signature over the raw bytes received.
        let ok = sig.to_str().unwrap() == sign(b"hook-secret", &body);
        h.insert(
            "x-signature-valid",
            if ok { "yes" } else { "no" }.parse().unwrap(),
        );
    }
    r.seen.lock().unwrap().push((Instant::now(), h, value));
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    let mut out = HeaderMap::new();
    if status == 429 {
        out.insert("retry-after", "0".parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), out)
}

async fn start_receiver(script: &[u16]) -> (SocketAddr, Receiver) {
    let r = Receiver {
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        ..Receiver::default()
    };
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, r)
}

/// A minimal SMTP responder: accepts every message and keeps its DATA.
async fn start_smtp() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let messages = Arc::new(Mutex::new(Vec::new()));
    let keep = messages.clone();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let keep = keep.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write
                    .write_all(b"220 localhost ESMTP test\r\n")
                    .await
                    .unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(d) = data.as_mut() {
                        if line == "." {
                            keep.lock().unwrap().push(data.take().unwrap_or_default());
                            write.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                        } else {
                            d.push_str(&line);
                            d.push('\n');
                        }
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250-localhost\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("DATA") {
                        data = Some(String::new());
                        b"354 go ahead\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (addr, messages)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fast_worker_config() -> OutboxWorkerConfig {
    let mut c = OutboxWorkerConfig {
        poll_interval: Duration::from_millis(20),
        backoff_base: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..OutboxWorkerConfig::default()
    };
    c.min_interval
        .insert(Channel::Slack, Duration::from_millis(150));
    c.min_interval
        .insert(Channel::PagerDuty, Duration::from_millis(10));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_delivers_once_with_retries_and_checked_payloads() {
    let (slack_addr, slack) = start_receiver(&[500, 429]).await;
    let (pd_addr, pd) = start_receiver(&[503]).await;
    let (hook_addr, hook) = start_receiver(&[]).await;
    let (smtp_addr, mail) = start_smtp().await;

    let store = Arc::new(MemoryStore::new());
    let mut cfg = config();
    cfg.public_url = Some("https://ops.example".into());
    let mut routing = Routing::default();
    routing.routes.insert(
        watchpost_core::Severity::Critical,
        vec![
            Channel::PagerDuty,
            Channel::Slack,
            Channel::Email,
            Channel::Webhook,
        ],
    );
    cfg.policy.routing = routing;
    let svc = IncidentService::builder(store.clone()).config(cfg).build();
    let worker = OutboxWorker::new(svc.clone(), fast_worker_config())
        .notifier(Arc::new(SlackNotifier::new(
            format!("http://{slack_addr}/hook"),
            Some("https://ops.example".into()),
        )))
        .notifier(Arc::new(
            PagerDutyNotifier::new("R0UT1NGKEY", Some("https://ops.example".into()))
                .with_url(format!("http://{pd_addr}/hook")),
        ))
        .notifier(Arc::new(WebhookNotifier::new(
            format!("http://{hook_addr}/hook"),
            b"hook-secret".to_vec(),
        )))
        .notifier(Arc::new(
            SmtpNotifier::new(
                &format!("smtp://{smtp_addr}"),
                "Watchpost <watchpost@example.com>",
                &["oncall@example.com".into()],
                None,
            )
            .unwrap(),
        ))
        .header_hook(Arc::new(|n: &watchpost_incident::outbox::Notification| {
            let mut h = http::HeaderMap::new();
            if let Some(c) = n.origin.as_ref().and_then(|o| o.correlation_id.as_deref()) {
                h.insert("x-correlation-id", c.parse().unwrap());
            }
            h
        }));
    assert_eq!(
        worker.channels(),
        vec![
            Channel::PagerDuty,
            Channel::Slack,
            Channel::Email,
            Channel::Webhook
        ]
    );
    let handle = worker.spawn();

    let alert = firing(
        "ApiDown",
        "critical",
        "api",
        Utc::now() - chrono::Duration::minutes(5),
    );
    let origin = Origin {
        correlation_id: Some("corr-42".into()),
        ..Origin::default()
    };
    let changes = svc
        .ingest(delivery(vec![alert.clone()]), Some(origin))
        .await
        .unwrap();
    let id = changes.incidents[0].id.clone();
    // Redeliveries change nothing and notify nobody.
    svc.ingest(delivery(vec![alert.clone()]), None)
        .await
        .unwrap();

    wait_until("the trigger on every channel", || {
        slack.seen.lock().unwrap().len() == 3
            && pd.seen.lock().unwrap().len() == 2
            && hook.seen.lock().unwrap().len() == 1
            && mail.lock().unwrap().len() == 1
    })
    .await;

    // Slack: Block Kit with severity, title, service, links; retried after 500 and 429, spaced apart.
    {
        let seen = slack.seen.lock().unwrap();
        let (_, headers, body) = &seen[2];
        assert_eq!(headers["x-correlation-id"], "corr-42");
        assert!(headers.get("idempotency-key").is_some());
        assert_eq!(seen[0].2, seen[2].2, "a retry sends the same message");
        assert!(
            body["text"]
                .as_str()
                .unwrap()
                .contains("[CRITICAL] Triggered: ApiDown is failing")
        );
        assert_eq!(body["blocks"][0]["type"], "header");
        let fields = body["blocks"][1]["fields"].to_string();
        assert!(fields.contains("critical (P1)") && fields.contains("api"));
        let actions = body["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "actions")
            .unwrap();
        assert_eq!(
            actions["elements"][0]["url"],
            format!("https://ops.example/incidents/{id}")
        );
        assert_eq!(actions["elements"][1]["url"], "https://runbooks.example/x");
        assert!(
            seen[1].0 - seen[0].0 >= Duration::from_millis(140),
            "Slack requests are spaced"
        );
    }
    // PagerDuty: Events API v2 trigger with the stable dedup key; retried after 503.
    let dedup = PagerDutyNotifier::dedup_key(&id);
    {
        let seen = pd.seen.lock().unwrap();
        let e = &seen[1].2;
        assert_eq!(e["routing_key"], "R0UT1NGKEY");
        assert_eq!(e["event_action"], "trigger");
        assert_eq!(e["dedup_key"], dedup);
        assert_eq!(e["payload"]["severity"], "critical");
        assert_eq!(e["payload"]["source"], "api");
        assert_eq!(e["payload"]["summary"], "ApiDown is failing");
        assert_eq!(
            e["links"][0]["href"],
            format!("https://ops.example/incidents/{id}")
        );
    }
    // Webhook: signed body.
    {
        let seen = hook.seen.lock().unwrap();
        assert_eq!(seen[0].1["x-signature-valid"], "yes");
        assert_eq!(seen[0].1["x-watchpost-event"], "trigger");
        assert_eq!(seen[0].2["kind"], "trigger");
        assert_eq!(seen[0].2["incident"]["id"], id.as_str());
    }
    // Email.
    {
        let m = mail.lock().unwrap();
        assert!(
            m[0].contains("Subject: [CRITICAL] Triggered: ApiDown is failing"),
            "{}",
            m[0]
        );
        assert!(
            m[0].contains("Service: api") && m[0].contains("Runbook: https://runbooks.example/x")
        );
        assert!(m[0].contains("To: oncall@example.com"));
    }

    // Resolve: PagerDuty gets `resolve` with the same key; everyone hears once.
    svc.ingest(delivery(vec![resolved(&alert, Utc::now())]), None)
        .await
        .unwrap();
    svc.ingest(delivery(vec![resolved(&alert, Utc::now())]), None)
        .await
        .unwrap();
    wait_until("the resolve on every channel", || {
        slack.seen.lock().unwrap().len() == 4
            && pd.seen.lock().unwrap().len() == 3
            && hook.seen.lock().unwrap().len() == 2
            && mail.lock().unwrap().len() == 2
    })
    .await;
    {
        let seen = pd.seen.lock().unwrap();
        assert_eq!(seen[2].2["event_action"], "resolve");
        assert_eq!(seen[2].2["dedup_key"], dedup);
        assert_eq!(seen[2].2["routing_key"], "R0UT1NGKEY");
    }
    wait_until("every entry settled", || {
        futures_util::FutureExt::now_or_never(store.outbox())
            .and_then(Result::ok)
            .is_some_and(|o| o.len() == 8 && o.iter().all(|e| e.state == OutboxState::Delivered))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(slack.seen.lock().unwrap().len(), 4, "nothing is sent twice");
    assert_eq!(pd.seen.lock().unwrap().len(), 3);
    let incident = store.get(id).await.unwrap().unwrap();
    let notified = incident
        .timeline
        .iter()
        .filter(|e| matches!(e.event, TimelineEvent::Notified { .. }))
        .count();
    assert_eq!(notified, 8);
    handle.shutdown().await;
}

#[tokio::test]
async fn other_4xx_is_not_retried_and_marks_the_entry_failed() {
    let (addr, hook) = start_receiver(&[400, 400, 400]).await;
    let store = Arc::new(MemoryStore::new());
    let mut cfg = config();
    cfg.policy
        .routing
        .routes
        .insert(watchpost_core::Severity::Critical, vec![Channel::Webhook]);
    let svc = IncidentService::builder(store.clone()).config(cfg).build();
    let mut registry = prometheus_client::registry::Registry::default();
    svc.register_metrics(&mut registry);
    let worker = OutboxWorker::new(svc.clone(), fast_worker_config()).notifier(Arc::new(
        WebhookNotifier::new(format!("http://{addr}/hook"), b"hook-secret".to_vec()),
    ));
    svc.ingest(
        delivery(vec![firing("X", "critical", "x", Utc::now())]),
        None,
    )
    .await
    .unwrap();
    for _ in 0..5 {
        worker.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(hook.seen.lock().unwrap().len(), 1, "a 400 is not retried");
    let outbox = store.outbox().await.unwrap();
    assert_eq!(outbox[0].state, OutboxState::Failed);
    assert!(outbox[0].last_error.as_deref().unwrap().contains("400"));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(
        text.contains("watchpost_incident_notifications_failed_total{channel=\"webhook\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn network_errors_are_retried_until_max_attempts() {
    // Nothing listens on this port.
    let addr = watchpost_test_support::free_addr();
    let store = Arc::new(MemoryStore::new());
    let mut cfg = config();
    cfg.policy
        .routing
        .routes
        .insert(watchpost_core::Severity::Critical, vec![Channel::Slack]);
    let svc = IncidentService::builder(store.clone()).config(cfg).build();
    let worker = OutboxWorker::new(
        svc.clone(),
        OutboxWorkerConfig {
            max_attempts: 3,
            ..fast_worker_config()
        },
    )
    .notifier(Arc::new(SlackNotifier::new(
        format!("http://{addr}/hook"),
        None,
    )));
    svc.ingest(
        delivery(vec![firing("Y", "critical", "y", Utc::now())]),
        None,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        worker.run_once().await.unwrap();
        let e = store.outbox().await.unwrap().remove(0);
        if e.state == OutboxState::Failed {
            assert_eq!(e.attempts, 3);
            assert!(e.last_error.unwrap().contains("gave up after 3 attempts"));
            break;
        }
        assert!(Instant::now() < deadline, "never gave up: {e:?}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

#[test]
fn backoff_grows_exponentially_with_jitter_and_a_cap() {
    use watchpost_incident::worker::backoff;
    let base = Duration::from_secs(2);
    let max = Duration::from_secs(60);
    for attempts in 1..10 {
        let d = backoff(attempts, base, max);
        let full = (base * 2u32.pow(attempts - 1)).min(max);
        assert!(
            d >= full / 2 && d <= full + Duration::from_millis(1),
            "{attempts}: {d:?} vs {full:?}"
        );
    }
}

/// A restart in the middle of the outbox (the process dies after claiming, before recording):
/// after the lease, a new process on the same SQLite file delivers each pending notification once,
/// and nothing delivered before the restart is sent again. (The SIGKILL variant with the server
/// binary lives in the server's tests.)
#[tokio::test]
async fn restart_mid_outbox_delivers_each_notification_once() {
    let (addr, hook) = start_receiver(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("incidents.db");
    let mut cfg = config();
    cfg.policy
        .routing
        .routes
        .insert(watchpost_core::Severity::Critical, vec![Channel::Webhook]);
    let worker_cfg = OutboxWorkerConfig {
        lease: Duration::from_millis(300),
        batch: 2,
        ..fast_worker_config()
    };

    // First process: three incidents; one delivered, two claimed when it "dies".
    {
        let store = Arc::new(
            watchpost_incident::store::sqlite::SqliteStore::open(&path)
                .await
                .unwrap(),
        );
        let svc = IncidentService::builder(store.clone())
            .config(cfg.clone())
            .build();
        for n in 0..3 {
            svc.ingest(
                delivery(vec![firing(
                    &format!("Crash{n}"),
                    "critical",
                    "x",
                    Utc::now(),
                )]),
                None,
            )
            .await
            .unwrap();
        }
        let worker = OutboxWorker::new(
            svc.clone(),
            OutboxWorkerConfig {
                batch: 1,
                ..worker_cfg.clone()
            },
        )
        .notifier(Arc::new(WebhookNotifier::new(
            format!("http://{addr}/hook"),
            b"hook-secret".to_vec(),
        )));
        assert_eq!(worker.run_once().await.unwrap(), 1);
        // Claimed, never completed: the process is gone.
        let claimed = store
            .claim_outbox(Utc::now(), Duration::from_millis(300), 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
    }
    assert_eq!(hook.seen.lock().unwrap().len(), 1);

    // Second process on the same file.
    let store = Arc::new(
        watchpost_incident::store::sqlite::SqliteStore::open(&path)
            .await
            .unwrap(),
    );
    let svc = IncidentService::builder(store.clone()).config(cfg).build();
    let worker = OutboxWorker::new(svc, worker_cfg).notifier(Arc::new(WebhookNotifier::new(
        format!("http://{addr}/hook"),
        b"hook-secret".to_vec(),
    )));
    assert_eq!(
        worker.run_once().await.unwrap(),
        0,
        "leased entries wait for their lease"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..3 {
        worker.run_once().await.unwrap();
    }
    let mut ids: Vec<String> = hook
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, b)| b["incident"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "each notification delivered once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert!(
        store
            .outbox()
            .await
            .unwrap()
            .iter()
            .all(|e| e.state == OutboxState::Delivered)
    );
}
