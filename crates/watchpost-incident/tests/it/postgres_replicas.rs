//! Two servers on one PostgreSQL database receiving the same deliveries at the same moment: one incident each, notified once.

use std::sync::Arc;
use std::time::Duration;

use watchpost_incident::store::postgres::PostgresStore;
use watchpost_incident::store::{IncidentQuery, IncidentStore};

use super::*;

async fn serve(store: PostgresStore) -> std::net::SocketAddr {
    let svc = IncidentService::builder(Arc::new(store))
        .config(config())
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, watchpost_incident::router(svc))
            .await
            .unwrap()
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_same_delivery_concurrently_make_one_incident() {
    let db = watchpost_test_support::TestDatabase::create().await;
    let a = PostgresStore::connect(&db.url(), 8).await.unwrap();
    let b = PostgresStore::connect(&db.url(), 8).await.unwrap();
    let check = a.clone();
    let (addr_a, addr_b) = (serve(a).await, serve(b).await);
    let client = reqwest::Client::new();

    // Several rounds, each a fresh group of alerts sent 4 times to each replica at once.
    for round in 0..5 {
        let alerts: Vec<_> = (0..3)
            .map(|n| firing(&format!("Down{round}x{n}"), "critical", "api", at(round)))
            .collect();
        let body = serde_json::to_string(&delivery(alerts)).unwrap();
        let sends = (0..8).map(|i| {
            let url = format!(
                "http://{}/webhooks/alertmanager",
                if i % 2 == 0 { addr_a } else { addr_b }
            );
            let req = client
                .post(url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body.clone());
            async move { req.send().await.unwrap().status() }
        });
        let statuses = tokio::time::timeout(
            Duration::from_secs(20),
            futures_util::future::join_all(sends),
        )
        .await
        .unwrap();
        assert!(statuses.iter().all(|s| s.is_success()), "{statuses:?}");
    }
    let incidents = check
        .list(IncidentQuery {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap()
        .items;
    assert_eq!(incidents.len(), 15, "one incident per alert");
    let mut keys: Vec<_> = incidents.iter().map(|i| i.key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 15);
    assert!(
        incidents.iter().all(|i| i.timeline.len() == 2),
        "triggered + alert added, once"
    );
    let outbox = check.outbox().await.unwrap();
    assert_eq!(outbox.len(), 15 * 3, "notified once per channel");
}
