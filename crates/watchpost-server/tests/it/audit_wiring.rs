//! watchpost-audit as wired into the server: mutating requests are audited with their outcome and
//! actor, other services post events, tenants see only their own, the trail verifies, and in
//! `fail_closed` mode every acknowledged event survives a SIGKILL of the server.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use watchpost_core::Role;
use watchpost_server::keys::generate;

use crate::support::{
    ROOT_KEY, Server, app_state, call, get, over_socket, post_json, sqlite_config, watchpost,
};

#[tokio::test]
async fn mutations_are_audited_and_tenants_see_only_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let state = app_state(sqlite_config(dir.path())).await;
    let root = format!("Bearer {ROOT_KEY}");
    let acme = generate(
        "acme-svc",
        Some("acme".into()),
        Role::Tenant,
        chrono::Utc::now(),
    );
    let other = generate(
        "other-svc",
        Some("other".into()),
        Role::Tenant,
        chrono::Utc::now(),
    );
    state.keys.insert(acme.record.clone()).await.unwrap();
    state.keys.insert(other.record.clone()).await.unwrap();

    // A mutating request through the layer (blocking mode: durable before the response).
    let (s, _, created) = call(
        &state,
        post_json(
            "/auth/keys",
            &[("authorization", &root), ("x-request-id", "audit-1")],
            r#"{"name":"bot","tenantId":"acme"}"#,
        ),
    )
    .await;
    assert_eq!(s, 201);
    assert!(created["key"].is_string());
    let (s, _, page) = call(
        &state,
        get("/audit/events?limit=50", &[("authorization", &root)]),
    )
    .await;
    assert_eq!(s, 200, "{page}");
    let items = page["items"].as_array().unwrap();
    let event = items
        .iter()
        .find(|e| e["requestId"] == "audit-1")
        .unwrap_or_else(|| panic!("the POST is audited: {page}"));
    assert_eq!(event["method"], "POST");
    assert_eq!(event["route"], "/auth/keys");
    assert_eq!(event["actor"]["apiKeyId"], "root");
    assert!(
        !page.to_string().contains(created["key"].as_str().unwrap()),
        "the created secret never reaches the trail"
    );

    // Another service posts an event; the actor is its key, whatever the body claims.
    let body = r#"{"action":"create","resourceType":"invoice","resourceId":"inv-1","actor":{"apiKeyId":"forged"}}"#;
    let (s, _, posted) = call(
        &state,
        post_json("/audit/events", &[("x-api-key", &acme.key)], body),
    )
    .await;
    assert_eq!(s, 201, "{posted}");
    let id = posted["id"].as_str().unwrap().to_owned();
    let (s, _, one) = call(
        &state,
        get(&format!("/audit/events/{id}"), &[("x-api-key", &acme.key)]),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(one["actor"]["apiKeyId"], acme.record.id.as_str());
    assert_eq!(one["actor"]["tenantId"], "acme");
    let (s, _, _) = call(
        &state,
        get(&format!("/audit/events/{id}"), &[("x-api-key", &other.key)]),
    )
    .await;
    assert_eq!(s, 404, "another tenant cannot read it");
    let (_, _, theirs) = call(&state, get("/audit/events", &[("x-api-key", &other.key)])).await;
    assert!(
        theirs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"]["tenantId"] == "other"),
        "{theirs}"
    );

    let (s, _, _) = call(&state, get("/audit/verify", &[("x-api-key", &acme.key)])).await;
    assert_eq!(s, 403);
    let (s, _, report) = call(&state, get("/audit/verify", &[("authorization", &root)])).await;
    assert_eq!(s, 200);
    assert_eq!(report["ok"], true, "{report}");
}

#[test]
fn fail_closed_loses_no_acknowledged_event_when_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("WATCHPOST_DATA_DIR", dir.path().display().to_string()),
        ("WATCHPOST_ROOT_API_KEY", ROOT_KEY.to_owned()),
        ("WATCHPOST_AUDIT_MODE", "fail_closed".to_owned()),
    ];
    let server = Server::start(&env);
    let addr = server.addr;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let root = format!("Bearer {ROOT_KEY}");
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let body = format!(
                        r#"{{"action":"create","resourceType":"order","resourceId":"w{w}-{n}"}}"#
                    );
                    if let Some(reply) = over_socket(
                        addr,
                        "POST",
                        "/audit/events",
                        &[("Authorization", &root)],
                        &body,
                    )
                    .filter(|r| r.status == 201)
                    {
                        let v: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
                        acknowledged
                            .lock()
                            .unwrap()
                            .push(v["id"].as_str().unwrap().to_owned());
                    }
                }
            })
        })
        .collect();
    // Kill while requests are in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acknowledged.lock().unwrap().len() < 200 {
        assert!(
            Instant::now() < deadline,
            "too few events acknowledged under load"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.sigkill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 200);

    let server = Server::start(&env);
    let addr = server.addr;
    let root = format!("Bearer {ROOT_KEY}");
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| {
            over_socket(
                addr,
                "GET",
                &format!("/audit/events/{id}"),
                &[("Authorization", &root)],
                "",
            )
            .map(|r| r.status)
                != Some(200)
        })
        .collect();
    drop(server);
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost: {:?}",
        missing.len(),
        acknowledged.len(),
        &missing[..missing.len().min(5)]
    );

    let out = watchpost()
        .args(["audit", "verify"])
        .env("WATCHPOST_DATA_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
}
