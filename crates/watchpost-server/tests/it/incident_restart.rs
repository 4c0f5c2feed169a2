//! The notification outbox across a crash: the built `watchpost` binary on SQLite is killed with
//! SIGKILL while a notification is in flight to a stalled receiver and others wait in the outbox;
//! restarted on the same data directory, it delivers every notification, and the receiver
//! acknowledges each one (by `Idempotency-Key`) exactly once.
//!
//! Delivery is at least once with an idempotency key: the receiver sees the request that was cut
//! by the kill a second time, with the same key, and answers that second copy. Everything the
//! worker had marked delivered before the kill is never sent again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use watchpost_test_support::free_addr;

use crate::support::{ROOT_KEY, Server, over_socket, watchpost};

const AM_TOKEN: &str = "alertmanager-token-0123456789";
const LEASE_MS: u64 = 1500;
const INCIDENTS: usize = 6;
const RESOLVED: usize = 3;
/// Requests the receiver answers before it starts stalling (the rest of the first run's
/// notifications stay in flight or in the outbox when the process is killed).
const ANSWERED_BEFORE_KILL: usize = 3;

/// One request the receiver read in full.
#[derive(Debug, Clone)]
struct Seen {
    key: String,
    incident: String,
    kind: String,
    answered: bool,
}

#[derive(Debug, Default)]
struct Log {
    seen: Vec<Seen>,
    /// How many more requests to answer; `None` answers all.
    budget: Option<usize>,
}

/// A local HTTP receiver standing in for the generic webhook: it records every notification,
/// answers 200 while its budget lasts, then holds requests without answering.
#[derive(Clone)]
struct Receiver {
    log: Arc<(Mutex<Log>, Condvar)>,
    addr: SocketAddr,
}

impl Receiver {
    fn start(budget: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new((
            Mutex::new(Log {
                seen: Vec::new(),
                budget: Some(budget),
            }),
            Condvar::new(),
        ));
        let shared = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = shared.clone();
                std::thread::spawn(move || serve(stream, &log));
            }
        });
        Self { log, addr }
    }

    fn answer_all(&self) {
        self.log.0.lock().unwrap().budget = None;
    }

    fn seen(&self) -> Vec<Seen> {
        self.log.0.lock().unwrap().seen.clone()
    }

    /// Waits until `done` holds for the log, or panics after `limit`.
    fn wait_for(&self, limit: Duration, what: &str, done: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + limit;
        let (lock, changed) = &*self.log;
        let mut log = lock.lock().unwrap();
        while !done(&log.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{what} within {limit:?}; saw {:?}",
                log.seen
            );
            log = changed.wait_timeout(log, left).unwrap().0;
        }
    }
}

/// Serves one keep-alive connection until it closes.
fn serve(stream: TcpStream, log: &(Mutex<Log>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    loop {
        let mut headers = BTreeMap::new();
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let Some((k, v)) = line.trim_end().split_once(':') else {
                break;
            };
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let n: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (lock, changed) = log;
        let mut log = lock.lock().unwrap();
        let answer = match &mut log.budget {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        };
        log.seen.push(Seen {
            key: headers.get("idempotency-key").cloned().unwrap_or_default(),
            incident: n["incident"]["id"].as_str().unwrap_or_default().to_owned(),
            kind: n["kind"].as_str().unwrap_or_default().to_owned(),
            answered: answer,
        });
        drop(log);
        changed.notify_all();
        if !answer {
            // Stall: hold the request unanswered until the sender goes away.
            let mut sink = [0u8; 64];
            while reader.read(&mut sink).unwrap_or(0) > 0 {}
            return;
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

/// The server on SQLite in `data`, notifying the receiver at `hook`.
fn start(data: &str, hook: SocketAddr) -> Server {
    Server::start(&[
        ("WATCHPOST_STORE", "sqlite".to_owned()),
        ("WATCHPOST_DATA_DIR", data.to_owned()),
        ("WATCHPOST_ROOT_API_KEY", ROOT_KEY.to_owned()),
        ("WATCHPOST_ALERTMANAGER_TOKEN", AM_TOKEN.to_owned()),
        (
            "WATCHPOST_NOTIFY_WEBHOOK_URL",
            format!("http://{hook}/hook"),
        ),
        (
            "WATCHPOST_NOTIFY_WEBHOOK_SECRET",
            "webhook-secret-0123456789".to_owned(),
        ),
        ("WATCHPOST_INCIDENT_OUTBOX_LEASE_MS", LEASE_MS.to_string()),
        ("WATCHPOST_INCIDENT_OUTBOX_POLL_MS", "100".to_owned()),
    ])
}

/// `GET path` with the root key: the JSON body of a 200.
fn api(server: &Server, path: &str) -> Value {
    let reply =
        over_socket(server.addr, "GET", path, &[("X-API-Key", ROOT_KEY)], "").expect("answer");
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    serde_json::from_str(&reply.body).expect("JSON")
}

/// Posts `payload` to the Alertmanager webhook; asserts it was accepted.
fn deliver(server: &Server, payload: &Value) {
    let auth = format!("Bearer {AM_TOKEN}");
    let reply = over_socket(
        server.addr,
        "POST",
        "/webhooks/alertmanager",
        &[("Authorization", &auth)],
        &payload.to_string(),
    )
    .expect("answer");
    assert!(
        (200..300).contains(&reply.status),
        "{}: {}",
        reply.status,
        reply.body
    );
}

/// A version 4 payload with one critical alert on `instance`.
fn payload(instance: &str, status: &str) -> Value {
    let labels = json!({
        "alertname": "RestartTest",
        "instance": instance,
        "service": "api",
        "severity": "critical",
    });
    let ends_at = if status == "resolved" {
        "2026-01-01T00:05:00Z"
    } else {
        "0001-01-01T00:00:00Z"
    };
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{instance=\"{instance}\"}}"),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "watchpost",
        "groupLabels": {"instance": instance},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": {"summary": format!("RestartTest on {instance}")},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": ends_at,
            "generatorURL": "http://prometheus.example/graph",
        }],
    })
}

#[test]
fn sigkill_mid_outbox_then_every_notification_is_delivered_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let receiver = Receiver::start(ANSWERED_BEFORE_KILL);
    let expected = INCIDENTS + RESOLVED;

    // First run: six incidents open, three resolve; nine notifications enter the outbox.
    let server = start(data, receiver.addr);
    let instances: Vec<String> = (0..INCIDENTS).map(|i| format!("node-{i}")).collect();
    for instance in &instances {
        deliver(&server, &payload(instance, "firing"));
    }
    for instance in &instances[..RESOLVED] {
        deliver(&server, &payload(instance, "resolved"));
    }
    // Three answered, the fourth held in flight: kill the process now.
    receiver.wait_for(
        Duration::from_secs(30),
        "a notification in flight to the stalled receiver",
        |seen| seen.len() > ANSWERED_BEFORE_KILL,
    );
    server.sigkill();
    let before_kill = receiver.seen();
    let cut: Vec<&Seen> = before_kill.iter().filter(|s| !s.answered).collect();
    assert_eq!(
        cut.len(),
        1,
        "one request was in flight at the kill: {before_kill:?}"
    );
    assert!(
        before_kill.len() < expected,
        "notifications were still in the outbox at the kill: {before_kill:?}"
    );

    // Second run on the same data directory, with a receiver that now answers everything.
    receiver.answer_all();
    let server = start(data, receiver.addr);
    receiver.wait_for(
        Duration::from_secs(60),
        "every notification acknowledged after the restart",
        |seen| {
            seen.iter()
                .filter(|s| s.answered)
                .map(|s| s.key.as_str())
                .collect::<BTreeSet<_>>()
                .len()
                >= expected
        },
    );
    // Longer than a lease plus a poll: a duplicate would have been sent by now.
    std::thread::sleep(Duration::from_millis(LEASE_MS * 2));
    let seen = receiver.seen();

    // Exactly once by Idempotency-Key: every key acknowledged once, one key per notification.
    let mut answered: BTreeMap<&str, usize> = BTreeMap::new();
    for s in seen.iter().filter(|s| s.answered) {
        assert!(
            !s.key.is_empty(),
            "every request carries an Idempotency-Key"
        );
        *answered.entry(s.key.as_str()).or_default() += 1;
    }
    assert_eq!(answered.len(), expected, "{seen:?}");
    assert!(
        answered.values().all(|&n| n == 1),
        "a key acknowledged twice: {answered:?}"
    );
    let mut per_change: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for s in &seen {
        per_change
            .entry((s.incident.clone(), s.kind.clone()))
            .or_default()
            .insert(s.key.as_str());
    }
    assert_eq!(per_change.len(), expected, "{per_change:?}");
    assert!(
        per_change.values().all(|keys| keys.len() == 1),
        "one key per notification, resends included: {per_change:?}"
    );
    let kinds: Vec<&str> = per_change.keys().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "trigger").count(), INCIDENTS);
    assert_eq!(kinds.iter().filter(|k| **k == "resolve").count(), RESOLVED);
    // What the receiver saw: the cut request once more (same key, answered), nothing else twice.
    assert_eq!(seen.len(), expected + 1, "{seen:?}");
    assert!(answered.contains_key(cut[0].key.as_str()));

    // The server agrees: six incidents, each notified on the webhook once per notification.
    let page = api(&server, "/incidents?limit=100");
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), INCIDENTS, "{page}");
    for item in items {
        let id = item["id"].as_str().expect("id");
        let incident = api(&server, &format!("/incidents/{id}"));
        let notified = incident["timeline"]
            .as_array()
            .expect("timeline")
            .iter()
            .filter(|e| e["event"]["type"] == "notified" && e["event"]["channel"] == "webhook")
            .count();
        let sent = per_change.keys().filter(|(i, _)| i == id).count();
        assert!(sent >= 1, "incident {id} was announced");
        assert_eq!(notified, sent, "timeline of {id}: {incident}");
    }
}

#[test]
fn an_outbox_lease_under_100_ms_is_refused_with_one_line() {
    let output = watchpost()
        .env("WATCHPOST_STORE", "memory")
        .env("WATCHPOST_LISTEN", free_addr().to_string())
        .env("WATCHPOST_INCIDENT_OUTBOX_LEASE_MS", "5")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run watchpost");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"invalid WATCHPOST_INCIDENT_OUTBOX_LEASE_MS="5""#)
            && stderr.contains("at least 100"),
        "{stderr}"
    );
}
