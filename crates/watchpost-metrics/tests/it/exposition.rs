//! `/metrics`: promtool's linter on real output, the OpenMetrics output parsed and checked
//! (exemplar syntax, `# EOF`), content negotiation, gzip, and prometheus-client registries.

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};

use axum::body::Body;
use http::Request;
use prometheus_client::metrics::counter::Counter as PcCounter;
use prometheus_client::metrics::family::Family as PcFamily;
use prometheus_client::metrics::gauge::Gauge as PcGauge;
use prometheus_client::metrics::histogram::Histogram as PcHistogram;
use prometheus_client::metrics::info::Info as PcInfo;
use prometheus_client::registry::{Registry, Unit};
use watchpost_core::{RequestContext, SpanId, TraceId};
use watchpost_metrics::{Format, Metrics};

use super::{app, get_req, metrics, send, text};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN: &str = "00f067aa0ba902b7";

/// A registry such as another Watchpost crate fills.
fn foreign_registry() -> Registry {
    let mut registry = Registry::default();
    let blocked = PcFamily::<Vec<(String, String)>, PcCounter>::default();
    blocked
        .get_or_create(&vec![("policy".to_owned(), "default".to_owned())])
        .inc_by(3);
    registry.register(
        "watchpost_ratelimit_blocked",
        "Requests refused by the rate limiter.",
        blocked,
    );
    let depth = PcGauge::<i64>::default();
    depth.set(4);
    registry.register(
        "watchpost_incident_outbox_depth",
        "Notifications waiting.",
        depth,
    );
    let latency = PcHistogram::new([0.01, 0.1, 1.0]);
    latency.observe(0.05);
    registry.register_with_unit(
        "watchpost_health_check_duration",
        "Duration of health checks.",
        Unit::Seconds,
        latency,
    );
    registry.register(
        "watchpost_audit_writer",
        "Audit writer identity.",
        PcInfo::new(vec![("stream".to_owned(), "replica-1".to_owned())]),
    );
    registry
}

/// Metrics that have seen traffic, with a foreign registry and an exemplar.
async fn busy_metrics() -> Metrics {
    let m = metrics();
    m.add_registry(foreign_registry());
    let orders = m
        .registry()
        .counter("shop_orders", "Orders placed, by \"channel\".", ["channel"])
        .unwrap();
    orders.inc(["we\"b\\shop\nline"]);
    m.db()
        .observe("select", "incidents", std::time::Duration::from_millis(3));
    let app = app(&m);
    let ctx = RequestContext::new().with_trace(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex(SPAN).unwrap(),
        true,
    );
    let mut req = get_req("/items/1");
    req.extensions_mut().insert(ctx);
    send(&app, req).await;
    send(&app, get_req("/nowhere")).await;
    let req = Request::post("/echo").body(Body::from("hello")).unwrap();
    send(&app, req).await;
    m
}

fn promtool() -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    });
    found.expect(
        "promtool is not on PATH: run cargo xtask ci, which installs prometheus (or apt-get install -y prometheus)",
    )
}

#[tokio::test]
async fn promtool_check_metrics_finds_nothing() {
    let m = busy_metrics().await;
    let response = send(&app(&m), get_req("/metrics")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = text(response).await;
    assert!(!body.contains("# EOF"));
    assert!(!body.contains(TRACE), "exemplars must not appear in 0.0.4");
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics found: {findings}\n--- exposition ---\n{body}"
    );
    // The foreign registry came through, renamed as 0.0.4 wants.
    for line in [
        "# TYPE watchpost_ratelimit_blocked_total counter",
        "watchpost_ratelimit_blocked_total{policy=\"default\"} 3",
        "# TYPE watchpost_audit_writer_info gauge",
        "watchpost_health_check_duration_seconds_count 1",
        "watchpost_incident_outbox_depth 4",
        "watchpost_build_info{version=\"0.1.0\",revision=\"abc123\",rustc=\"1.95.0\"} 1",
        "shop_orders_total{channel=\"we\\\"b\\\\shop\\nline\"} 1",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
}

/// Checks OpenMetrics text line by line; returns the exemplars found (label text, value).
fn check_openmetrics(body: &str) -> Vec<(String, f64)> {
    assert!(body.ends_with("# EOF\n"), "must end with # EOF");
    assert_eq!(body.matches("# EOF").count(), 1);
    let mut exemplars = Vec::new();
    let mut families = std::collections::HashSet::new();
    for line in body.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap();
            let name = parts.next().unwrap_or_default();
            assert!(
                matches!(kind, "HELP" | "TYPE" | "UNIT"),
                "bad metadata line {line:?}"
            );
            assert!(!name.is_empty(), "metadata without a name: {line:?}");
            if kind == "TYPE" {
                assert!(
                    families.insert(name.to_owned()),
                    "family {name} described twice"
                );
                let t = parts.next().unwrap();
                assert!(
                    [
                        "counter",
                        "gauge",
                        "histogram",
                        "info",
                        "unknown",
                        "stateset",
                        "gaugehistogram",
                        "summary"
                    ]
                    .contains(&t),
                    "bad type in {line:?}"
                );
            }
            continue;
        }
        // name{labels} value [timestamp] [# {labels} value [timestamp]]
        let (sample, exemplar) = match split_exemplar(line) {
            Some((s, e)) => (s, Some(e)),
            None => (line, None),
        };
        let value = sample.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        if let Some(ex) = exemplar {
            assert!(
                sample.contains("_bucket{") || sample.contains("_total"),
                "exemplar on a sample that may not carry one: {line:?}"
            );
            let ex = ex.strip_prefix('{').expect("exemplar labels open with {");
            let (labels, rest) = ex.split_once("} ").expect("exemplar labels close with }");
            let runes: usize = labels
                .split(',')
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    k.chars().count() + v.trim_matches('"').chars().count()
                })
                .sum();
            assert!(
                runes <= 128,
                "exemplar labels over 128 characters: {line:?}"
            );
            let mut rest = rest.split(' ');
            let v: f64 = rest.next().unwrap().parse().expect("exemplar value");
            exemplars.push((labels.to_owned(), v));
        }
    }
    exemplars
}

fn split_exemplar(line: &str) -> Option<(&str, &str)> {
    let end_of_labels = if let Some(open) = line.find('{') {
        let mut in_quotes = false;
        let mut escaped = false;
        let mut end = open;
        for (i, c) in line[open..].char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '"' => in_quotes = !in_quotes,
                '}' if !in_quotes => {
                    end = open + i;
                    break;
                }
                _ => {}
            }
        }
        end
    } else {
        0
    };
    let pos = line[end_of_labels..].find(" # ")?;
    Some((
        &line[..end_of_labels + pos],
        &line[end_of_labels + pos + 3..],
    ))
}

#[tokio::test]
async fn openmetrics_is_well_formed_and_carries_the_exemplar() {
    let m = busy_metrics().await;
    let req = Request::get("/metrics")
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .body(Body::empty())
        .unwrap();
    let response = send(&app(&m), req).await;
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = text(response).await;
    let exemplars = check_openmetrics(&body);
    assert_eq!(
        exemplars,
        vec![(
            format!("trace_id=\"{TRACE}\",span_id=\"{SPAN}\""),
            exemplars[0].1
        )],
        "{body}"
    );
    let line = body.lines().find(|l| l.contains(TRACE)).unwrap();
    assert!(line.starts_with("http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"/items/{id}\""), "{line}");
    // Counters are described without `_total` in OpenMetrics, and info is an info.
    assert!(body.contains("# TYPE shop_orders counter\n"));
    assert!(body.contains("# TYPE watchpost_build info\n"));
    assert!(body.contains("# TYPE watchpost_audit_writer info\n"));
    assert!(body.contains("# UNIT http_server_request_duration_seconds seconds\n"));
}

#[tokio::test]
async fn unsampled_traces_leave_no_exemplar() {
    let m = metrics();
    let ctx = RequestContext::new().with_trace(
        TraceId::from_hex(TRACE).unwrap(),
        SpanId::from_hex(SPAN).unwrap(),
        false,
    );
    let mut req = get_req("/items/1");
    req.extensions_mut().insert(ctx);
    send(&app(&m), req).await;
    assert!(!m.render(Format::OpenMetrics).contains(TRACE));
}

#[tokio::test]
async fn gzip_when_asked() {
    let m = busy_metrics().await;
    let req = Request::get("/metrics")
        .header("accept-encoding", "gzip, deflate")
        .body(Body::empty())
        .unwrap();
    let response = send(&app(&m), req).await;
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert!(plain.contains("http_server_request_duration_seconds_bucket"));
    assert!(plain.len() > bytes.len());

    let response = send(&app(&m), get_req("/metrics")).await;
    assert!(response.headers().get("content-encoding").is_none());
}

#[tokio::test]
async fn describe_lists_every_family_written() {
    let m = busy_metrics().await;
    let described: Vec<String> = m.describe().into_iter().map(|(n, _)| n).collect();
    let text = m.render(Format::Prometheus);
    let written: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .filter(|n| {
            !n.starts_with("watchpost_ratelimit")
                && !n.starts_with("watchpost_incident")
                && !n.starts_with("watchpost_health")
                && !n.starts_with("watchpost_audit")
        })
        .collect();
    let described: std::collections::BTreeSet<&str> =
        described.iter().map(String::as_str).collect();
    assert_eq!(written, described);
}

#[tokio::test]
async fn built_in_names_are_reserved() {
    let m = metrics();
    for name in [
        "process_open_fds",
        "process_cpu_seconds_total",
        "watchpost_build_info",
        "http_server_active_requests",
        "db_client_operation_duration_seconds",
        "watchpost_metrics_overflow_total",
    ] {
        assert!(
            matches!(
                m.registry().gauge(name, "", []),
                Err(watchpost_metrics::MetricsError::DuplicateMetric { .. })
            ),
            "{name} could be registered twice"
        );
    }
}

#[test]
fn readme_lists_every_metric_with_its_labels() {
    let m = super::metrics_with(watchpost_metrics::MetricsConfig {
        naming: watchpost_metrics::HttpNaming::Both,
        ..watchpost_metrics::MetricsConfig::default()
    });
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (name, labels) in m.describe() {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}`")))
            .unwrap_or_else(|| panic!("README.md has no table row for {name}"));
        for label in &labels {
            assert!(
                row.contains(&format!("`{label}`")),
                "README row of {name} lacks label {label}: {row}"
            );
        }
        if labels.is_empty() {
            assert!(
                row.contains("| none |"),
                "README row of {name} should say its labels are none: {row}"
            );
        }
    }
}
