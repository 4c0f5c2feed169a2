//! Benchmarks: alerts per second through `POST /webhooks/alertmanager` on a real socket for the
//! memory, SQLite and PostgreSQL stores; webhook latency percentiles; memory for many open alerts.
//!
//! `cargo bench -p watchpost-incident --bench incident -- --quick` proves they run; figures are
//! taken by the lead on a quiet machine. `WATCHPOST_BENCH_OPEN_ALERTS` sets the memory test size
//! (default 100000).
#![allow(clippy::print_stdout)] // Printing the latency and memory figures is the point of this bench.
#![allow(missing_docs)] // criterion_main! generates an undocumented main.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use watchpost_incident::alertmanager::{Alert, AlertStatus, LabelSet, WebhookPayload};
use watchpost_incident::model::Channel;
use watchpost_incident::notify::{Notifier, NotifyError};
use watchpost_incident::outbox::Notification;
use watchpost_incident::store::{BoxFuture, IncidentStore, MemoryStore, SharedStore};
use watchpost_incident::worker::{OutboxWorker, OutboxWorkerConfig};
use watchpost_incident::{IncidentConfig, IncidentService};

const TOKEN: &str = "bench-token";
const ALERTS_PER_DELIVERY: u64 = 10;
const CONCURRENT: u64 = 8;

static NEXT: AtomicU64 = AtomicU64::new(0);

fn delivery() -> Vec<u8> {
    let alerts = (0..ALERTS_PER_DELIVERY)
        .map(|_| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let labels: LabelSet = [
                ("alertname", "BenchDown".to_owned()),
                ("instance", format!("i{n}")),
                ("severity", "critical".to_owned()),
                ("service", "bench".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            Alert {
                status: AlertStatus::Firing,
                labels,
                annotations: LabelSet::new(),
                starts_at: chrono::Utc::now(),
                ends_at: None,
                generator_url: String::new(),
                fingerprint: None,
            }
        })
        .collect();
    let p = WebhookPayload {
        version: "4".into(),
        group_key: String::new(),
        truncated_alerts: 0,
        status: AlertStatus::Firing,
        receiver: "bench".into(),
        group_labels: LabelSet::new(),
        common_labels: LabelSet::new(),
        common_annotations: LabelSet::new(),
        external_url: String::new(),
        alerts,
    };
    serde_json::to_vec(&p).unwrap_or_default()
}

async fn serve(store: SharedStore) -> String {
    let svc = IncidentService::builder(store)
        .config(IncidentConfig {
            alertmanager_token: Some(TOKEN.into()),
            ..IncidentConfig::default()
        })
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, watchpost_incident::router(svc)).await });
    format!("http://{addr}/webhooks/alertmanager")
}

async fn post(client: &reqwest::Client, url: &str) {
    let r = client
        .post(url)
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(delivery())
        .send()
        .await
        .expect("send");
    assert!(r.status().is_success(), "{}", r.status());
}

fn stores(
    rt: &tokio::runtime::Runtime,
) -> (
    Vec<(&'static str, SharedStore)>,
    tempfile::TempDir,
    watchpost_test_support::TestDatabase,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = rt
        .block_on(watchpost_incident::store::sqlite::SqliteStore::open(
            dir.path().join("bench.db"),
        ))
        .expect("sqlite");
    let db = rt.block_on(watchpost_test_support::TestDatabase::create());
    let pg = rt
        .block_on(watchpost_incident::store::postgres::PostgresStore::connect(
            &db.url(),
            8,
        ))
        .expect("postgres");
    (
        vec![
            ("memory", Arc::new(MemoryStore::new())),
            ("sqlite", Arc::new(sqlite)),
            ("postgres", Arc::new(pg)),
        ],
        dir,
        db,
    )
}

fn webhook_throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (stores, _dir, _db) = stores(&rt);
    let client = reqwest::Client::new();
    let mut group = c.benchmark_group("webhook_alerts");
    group.throughput(Throughput::Elements(ALERTS_PER_DELIVERY));
    group.measurement_time(Duration::from_secs(3));
    for (name, store) in stores {
        let url = rt.block_on(serve(store));
        group.throughput(Throughput::Elements(ALERTS_PER_DELIVERY));
        group.bench_function(format!("{name}/sequential"), |b| {
            b.to_async(&rt).iter(|| post(&client, &url))
        });
        // Eight deliveries in flight at once, as several Alertmanager groups (and peers) send.
        group.throughput(Throughput::Elements(ALERTS_PER_DELIVERY * CONCURRENT));
        group.bench_function(format!("{name}/concurrent"), |b| {
            b.to_async(&rt).iter(|| {
                futures_util::future::join_all((0..CONCURRENT).map(|_| post(&client, &url)))
            })
        });
        // Latency under sequential load: p50/p99 of 300 deliveries.
        let mut samples: Vec<Duration> = rt.block_on(async {
            let mut s = Vec::with_capacity(300);
            for _ in 0..300 {
                let t = Instant::now();
                post(&client, &url).await;
                s.push(t.elapsed());
            }
            s
        });
        samples.sort();
        println!(
            "webhook latency {name}: p50 {:?} p99 {:?}",
            samples[samples.len() / 2],
            samples[samples.len() * 99 / 100]
        );
    }
    group.finish();
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

/// A notifier that accepts everything at once (the memory test measures storage, not delivery).
#[derive(Debug)]
struct Accepting(Channel);

impl Notifier for Accepting {
    fn channel(&self) -> Channel {
        self.0
    }

    fn send<'a>(
        &'a self,
        _notification: &'a Notification,
        _headers: http::HeaderMap,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async { Ok(()) })
    }
}

fn open_alert_memory(_c: &mut Criterion) {
    let n: u64 = std::env::var("WATCHPOST_BENCH_OPEN_ALERTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // Both stores stay alive to the end, so the second figure cannot reuse the first one's pages.
    let mut kept = Vec::new();
    for delivered in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let channels = [Channel::PagerDuty, Channel::Slack, Channel::Email];
        // Without notifiers no channel is routed to; with them, critical goes to all three.
        let svc = IncidentService::builder(store.clone())
            .channels(if delivered { &channels } else { &[] })
            .build();
        let mut worker = OutboxWorker::new(
            svc.clone(),
            OutboxWorkerConfig {
                min_interval: Default::default(),
                batch: 1000,
                ..OutboxWorkerConfig::default()
            },
        );
        for c in channels {
            worker = worker.notifier(Arc::new(Accepting(c)));
        }
        let before = resident_bytes();
        rt.block_on(async {
            for _ in 0..n / ALERTS_PER_DELIVERY {
                let p = WebhookPayload::parse(&delivery()).expect("payload");
                svc.ingest(p, None).await.expect("ingest");
                // The worker keeps up, as it does in a running server.
                if delivered {
                    while worker.run_once().await.expect("outbox round") > 0 {}
                }
            }
        });
        let after = resident_bytes();
        let outbox = rt.block_on(store.outbox()).expect("outbox").len();
        println!(
            "memory store, {n} open alerts, {}: {:.1} MiB resident growth ({outbox} outbox rows)",
            if delivered {
                "3 channels, notifications delivered"
            } else {
                "no notifier configured"
            },
            (after.saturating_sub(before)) as f64 / 1048576.0
        );
        kept.push((svc, store));
    }
}

// Memory first: resident growth is only the store's own before other benchmarks have grown the heap.
criterion_group!(benches, open_alert_memory, webhook_throughput);
criterion_main!(benches);
