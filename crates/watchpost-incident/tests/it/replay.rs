//! Property: every delivery replayed 1 to 10 times, shuffled, from two simulated HA peers gives the
//! same incidents, timeline, alerts and notifications as one clean delivery.
//!
//! Model of the network: Alertmanager sends deliveries in order; each may be retried or duplicated
//! by the other peer, and those copies may arrive at any later moment (after later deliveries).

use std::sync::Arc;

use proptest::prelude::*;
use watchpost_incident::alertmanager::{Alert, WebhookPayload};
use watchpost_incident::model::Incident;
use watchpost_incident::store::{IncidentQuery, IncidentStore, MemoryStore};

use super::*;

/// One alert's episodes: (start minute, duration minutes); episodes do not overlap.
fn scenario() -> impl Strategy<Value = Vec<WebhookPayload>> {
    let alert = (
        prop::sample::select(vec!["critical", "warning"]),
        prop::collection::vec((1i64..40, 1i64..30), 1..4),
    );
    (
        prop::collection::vec(alert, 1..4),
        prop::collection::vec(1usize..4, 20),
    )
        .prop_map(|(alerts, chunks)| {
            let mut events: Vec<(i64, Alert)> = Vec::new();
            for (n, (severity, episodes)) in alerts.iter().enumerate() {
                let name = format!("Alert{n}");
                let mut t = 0;
                for (gap, duration) in episodes {
                    let start = t + gap;
                    let end = start + duration;
                    let f = firing(&name, severity, "svc", at(start));
                    events.push((start, f.clone()));
                    events.push((end, resolved(&f, at(end))));
                    t = end;
                }
            }
            events.sort_by_key(|(t, _)| *t);
            let mut deliveries = Vec::new();
            let mut it = events.into_iter().map(|(_, a)| a).peekable();
            let mut sizes = chunks.into_iter().cycle();
            while it.peek().is_some() {
                let size = sizes.next().unwrap_or(1);
                deliveries.push(delivery(it.by_ref().take(size).collect()));
            }
            deliveries
        })
}

#[derive(Debug, PartialEq)]
struct Outcome {
    incidents: Vec<serde_json::Value>,
    alerts: Vec<String>,
    notifications: Vec<(String, u64, String, String)>,
}

fn normalise(mut incidents: Vec<Incident>) -> Vec<serde_json::Value> {
    incidents.sort_by_key(|a| (a.key.clone(), a.started_at));
    incidents
        .into_iter()
        .map(|mut i| {
            i.id = String::new();
            serde_json::to_value(i).unwrap()
        })
        .collect()
}

async fn run(deliveries: Vec<WebhookPayload>) -> Outcome {
    let store = Arc::new(MemoryStore::new());
    let (svc, _) = service_with(store.clone(), config());
    for d in deliveries {
        svc.ingest(d, None).await.unwrap();
    }
    let incidents = store
        .list(IncidentQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    let keys: std::collections::HashMap<String, String> = incidents
        .iter()
        .map(|i| (i.id.clone(), format!("{}@{}", i.key, i.started_at)))
        .collect();
    let mut alerts: Vec<String> = store
        .firing_alerts()
        .await
        .unwrap()
        .into_iter()
        .map(|a| format!("{}@{}", a.fingerprint, a.starts_at))
        .collect();
    alerts.sort();
    let mut notifications: Vec<_> = store
        .outbox()
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                keys[&e.notification.incident.id].clone(),
                e.revision,
                e.notification.channel.as_str().to_owned(),
                e.notification.kind.as_str().to_owned(),
            )
        })
        .collect();
    notifications.sort();
    Outcome {
        incidents: normalise(incidents),
        alerts,
        notifications,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replayed_ha_deliveries_equal_one_clean_delivery(
        deliveries in scenario(),
        copies in prop::collection::vec(1usize..=10, 40),
        seeds in prop::collection::vec(any::<u32>(), 400),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let clean = rt.block_on(run(deliveries.clone()));
        prop_assert!(!clean.incidents.is_empty() || !clean.alerts.is_empty() || deliveries.iter().all(|d| d.alerts.iter().all(|a| a.labels["severity"] == "warning")));

        // Ranks: the first copy of delivery i at i*1000; extra copies anywhere after it.
        let n = deliveries.len();
        let mut seed = seeds.into_iter().cycle();
        let mut ranked: Vec<(u64, usize, bool)> = Vec::new();
        for (i, _) in deliveries.iter().enumerate() {
            ranked.push(((i as u64) * 1000, i, false));
            for c in 1..copies[i % copies.len()] {
                let span = ((n - i) as u64) * 1000;
                let offset = 1 + u64::from(seed.next().unwrap()) % span;
                ranked.push(((i as u64) * 1000 + offset, i, c % 2 == 1));
            }
        }
        ranked.sort_by_key(|(r, i, _)| (*r, *i));
        let replay: Vec<WebhookPayload> = ranked
            .into_iter()
            .map(|(_, i, peer_b)| {
                let mut d = deliveries[i].clone();
                if peer_b {
                    d.external_url = "http://alertmanager-b:9093".into();
                }
                d
            })
            .collect();
        let replayed = rt.block_on(run(replay));
        prop_assert_eq!(clean, replayed);
    }
}
