//! Metrics and correlation as wired into the server: `/metrics` passes promtool and lists what
//! docs/metrics.md lists, the token and root rules, request ids on every response and problem,
//! `/errors` root only.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{ROOT_KEY, app_state, call, get, memory_config};

fn root() -> (&'static str, String) {
    ("authorization", format!("Bearer {ROOT_KEY}"))
}

async fn scrape(
    state: &watchpost_server::app::AppState,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let (s, _, body) = call(state, get("/metrics", headers)).await;
    (
        s.as_u16(),
        body.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string()),
    )
}

/// Metric family names in Prometheus text (from `# TYPE` lines).
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Metric names in the first column of docs/metrics.md tables (`| \`name\` | ...`).
fn documented() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md exists");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn metrics_endpoint_is_clean_complete_and_documented() {
    let mut config = memory_config();
    // Both namings, so the legacy families are exported too.
    config.metrics_naming = watchpost_metrics::HttpNaming::Both;
    let state = app_state(config).await;
    state.health.mark_started();
    // What `watchpost serve` adds: the span exporter's counters (export off here).
    let telemetry = watchpost_correlation::Telemetry::off(
        &watchpost_correlation::OtelConfig::disabled("watchpost"),
    );
    watchpost_server::wiring::metrics::export(&state.metrics, |r| telemetry.register_metrics(r));
    // Some traffic: a routed request, an unknown route, a refused key, a probe.
    call(&state, get("/auth/whoami", &[("x-api-key", ROOT_KEY)])).await;
    call(&state, get("/no/such/route", &[])).await;
    call(&state, get("/auth/whoami", &[("x-api-key", "nonsense")])).await;
    call(
        &state,
        get("/health/ready", &[("x-request-id", "bad id with spaces")]),
    )
    .await;

    let (status, text) = scrape(&state, &[]).await;
    assert_eq!(status, 200);
    assert!(text.contains(r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/auth/whoami",http_response_status_code="200"} 1"#), "{text}");
    assert!(
        !text.contains("/no/such/route"),
        "raw paths never become labels"
    );
    assert!(
        text.contains(r#"watchpost_auth_attempts_total{result="success"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"watchpost_auth_attempts_total{result="malformed"} 1"#),
        "{text}"
    );
    // Results nobody met yet are exported at 0, so rate() and alerts see them from the start.
    assert!(
        text.contains(r#"watchpost_auth_attempts_total{result="revoked"} 0"#),
        "{text}"
    );
    assert!(text.contains("watchpost_health_check_status"), "{text}");
    assert!(
        text.contains(r#"watchpost_correlation_rejected_ids_total{header="x-request-id"} 1"#),
        "{text}"
    );
    assert!(text.contains("watchpost_build_info{"), "{text}");

    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is on PATH (run cargo xtask ci, which installs the Debian package prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && findings.trim().is_empty(),
        "promtool check metrics: {findings}"
    );

    let mut exported = families(&text);
    exported.extend(state.metrics.describe().into_iter().map(|(name, _)| name));
    // Counters are typed under their base name in the 0.0.4 text; docs list the sample name.
    let exported: BTreeSet<String> = exported
        .into_iter()
        .map(|n| {
            if text.contains(&format!("# TYPE {n} counter")) && !n.ends_with("_total") {
                format!("{n}_total")
            } else {
                n
            }
        })
        .collect();
    let docs = documented();
    let undocumented: Vec<_> = exported.difference(&docs).collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/metrics.md: {undocumented:?}"
    );
    let server_docs: BTreeSet<String> = docs
        .iter()
        .filter(|n| {
            !n.starts_with("watchpost_audit")
                && !n.starts_with("watchpost_ratelimit")
                && !n.starts_with("watchpost_incident")
                && !n.starts_with("watchpost_notifications")
                && !n.starts_with("watchpost_webhook")
        })
        .cloned()
        .collect();
    // Labelled counters that only exist once their first event happened (checked in their crate's tests).
    const APPEAR_ON_FIRST_EVENT: &[&str] = &[
        "watchpost_errors_total",
        "watchpost_otlp_spans_dropped_total",
    ];
    let missing: Vec<_> = server_docs
        .difference(&exported)
        .filter(|n| !APPEAR_ON_FIRST_EVENT.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "in docs/metrics.md but not exported: {missing:?}"
    );
}

#[tokio::test]
async fn metrics_token_and_root_rules() {
    let mut config = memory_config();
    config.metrics_token = Some("scrape-token-0123456789".to_owned());
    let state = app_state(config).await;
    assert_eq!(scrape(&state, &[]).await.0, 401);
    assert_eq!(
        scrape(&state, &[("authorization", "Bearer wrong-token-000000000")])
            .await
            .0,
        401
    );
    assert_eq!(
        scrape(
            &state,
            &[("authorization", "Bearer scrape-token-0123456789")]
        )
        .await
        .0,
        200
    );
    // The scrape token is not an API key: it is not counted as a failed authentication.
    assert_eq!(state.auth.counters().snapshot()[1], ("malformed", 0));

    let (s, _, body) = call(&state, get("/metrics/summary", &[])).await;
    assert_eq!(
        (s.as_u16(), body["reason"].as_str()),
        (401, Some("missing"))
    );
    let (k, v) = root();
    let (s, _, body) = call(&state, get("/metrics/summary", &[(k, &v)])).await;
    assert_eq!(s, 200);
    assert!(body["totalRequests"].is_number(), "{body}");
    let (s, _, _) = call(&state, get("/errors", &[])).await;
    assert_eq!(s, 401);
    let (s, _, groups) = call(&state, get("/errors", &[(k, &v)])).await;
    assert_eq!(s, 200, "{groups}");
}

#[tokio::test]
async fn every_response_and_problem_carries_the_request_id() {
    let state = app_state(memory_config()).await;
    let (s, h, body) = call(
        &state,
        get(
            "/no/such/route",
            &[("x-request-id", "req-42"), ("x-correlation-id", "flow-7")],
        ),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(h["x-request-id"], "req-42");
    assert_eq!(h["x-correlation-id"], "flow-7");
    assert_eq!(body["requestId"], "req-42");

    let (_, h, body) = call(&state, get("/auth/keys", &[("x-request-id", "bad\tid")])).await;
    let fresh = h["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(fresh, "bad\tid");
    assert_eq!(fresh.len(), 36, "a new UUIDv7 replaces a bad id");
    assert_eq!(body["requestId"], fresh.as_str());
    assert_eq!(
        h["x-correlation-id"],
        fresh.as_str(),
        "the correlation id defaults to the request id"
    );
}
