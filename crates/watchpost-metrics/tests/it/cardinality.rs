//! The cardinality cap: a label flood folds into the overflow series, is counted, warns once,
//! and keeps memory bounded; property: any label value renders to a parseable sample.

use proptest::prelude::*;
use watchpost_metrics::{Format, MetricsConfig};
use watchpost_test_support::LogCapture;

use super::{app, get_req, metrics_with, samples, send};

#[test]
fn label_flood_past_the_cap_folds_into_one_overflow_series_and_warns_once() {
    let logs = LogCapture::new();
    let _guard = logs.set_default();
    let mut config = MetricsConfig {
        max_series_per_family: 50,
        ..MetricsConfig::default()
    };
    config.series_limits.insert("user_logins_total".into(), 10);
    let m = metrics_with(config);
    let logins = m
        .registry()
        .counter(
            "user_logins",
            "Logins by user (a bad label choice).",
            ["user"],
        )
        .unwrap();
    let flood = m
        .registry()
        .gauge("flood", "Unbounded labels.", ["id"])
        .unwrap();
    for i in 0..100_000 {
        logins.inc([&format!("user-{i}")]);
        flood.set([&format!("{i}")], 1);
    }
    assert_eq!(logins.len(), 11, "10 series plus the overflow series");
    assert_eq!(flood.len(), 51);
    let text = m.render(Format::Prometheus);
    assert!(
        text.contains("user_logins_total{otel_metric_overflow=\"true\"} 99990\n"),
        "{}",
        &text[..2000.min(text.len())]
    );
    assert!(text.contains("watchpost_metrics_overflow_total{metric=\"user_logins\"} 99990\n"));
    assert!(text.contains("watchpost_metrics_overflow_total{metric=\"flood\"} 99950\n"));
    assert!(text.contains(
        "watchpost_metrics_overflow_total{metric=\"http_server_request_duration_seconds\"} 0\n"
    ));
    // Bounded output, so bounded storage: a few kilobytes, not 100,000 series.
    assert!(
        text.len() < 64 * 1024,
        "exposition grew to {} bytes",
        text.len()
    );

    let warnings: Vec<_> = logs
        .json_lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN")
        .collect();
    assert_eq!(warnings.len(), 2, "one warning per family: {warnings:?}");
    assert!(
        warnings
            .iter()
            .any(|w| w["fields"]["metric"] == "user_logins")
    );
}

#[tokio::test]
async fn routes_are_capped_too() {
    let m = metrics_with(MetricsConfig {
        max_series_per_family: 3,
        ..MetricsConfig::default()
    });
    let app = app(&m);
    // Twice over: the second round meets the layer's cache of resolved series for the kept
    // label sets, and must still fold (and count) every request past the cap.
    for _ in 0..2 {
        for code in [200, 201, 202, 203, 204, 205] {
            send(&app, get_req(&format!("/status/{code}"))).await;
        }
    }
    let counts = samples(&m, "http_server_request_duration_seconds_count");
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.contains(
        &"http_server_request_duration_seconds_count{otel_metric_overflow=\"true\"} 6".to_owned()
    ));
    for code in [200, 201, 202] {
        let kept = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"/status/{{code}}\",http_response_status_code=\"{code}\"}} 2"
        );
        assert!(counts.contains(&kept), "{kept} missing from {counts:?}");
    }
    let text = m.render(Format::Prometheus);
    assert!(
        text.contains(
            "watchpost_metrics_overflow_total{metric=\"http_server_request_duration_seconds\"} 6\n"
        ),
        "every folded request is counted"
    );
}

/// The layer caches the series of at most 4,096 (method, status, route) combinations; past
/// that, requests take the uncached path and are still counted, each in its own series.
#[tokio::test]
async fn past_the_resolved_series_cache_requests_are_still_counted() {
    let m = metrics_with(MetricsConfig {
        max_series_per_family: 10_000,
        process_metrics: false,
        ..MetricsConfig::default()
    });
    let app = app(&m);
    let request = |i: usize| {
        // Unmatched paths take the route from the request context.
        let mut ctx = watchpost_core::RequestContext::new();
        ctx.route = Some(std::sync::Arc::from(format!("/ctx/{i}")));
        let mut req = get_req("/nowhere");
        req.extensions_mut().insert(ctx);
        req
    };
    for i in 0..4_200 {
        send(&app, request(i)).await;
    }
    for i in [0, 4_095, 4_096, 4_199] {
        send(&app, request(i)).await;
    }
    let counts = samples(&m, "http_server_request_duration_seconds_count");
    assert_eq!(counts.len(), 4_200);
    let count = |i: usize| {
        let prefix = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"/ctx/{i}\","
        );
        counts
            .iter()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map(|n| n.parse::<u64>().expect("a count"))
    };
    for i in [0, 4_095, 4_096, 4_199] {
        assert_eq!(count(i), Some(2), "/ctx/{i}");
    }
    assert_eq!(count(1), Some(1));
    assert_eq!(count(4_150), Some(1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_label_value_renders_as_one_escaped_sample(value in "\\PC{0,40}", newline in any::<bool>()) {
        let value = if newline { format!("{value}\n\"\\") } else { value };
        let m = metrics_with(MetricsConfig { process_metrics: false, ..MetricsConfig::default() });
        let c = m.registry().counter("prop_events", "Events.", ["v"]).unwrap();
        c.inc([&value]);
        let text = m.render(Format::Prometheus);
        let line = text.lines().find(|l| l.starts_with("prop_events_total{")).unwrap();
        let quoted = line.strip_prefix("prop_events_total{v=\"").unwrap().strip_suffix("\"} 1").unwrap();
        // Unescape and compare.
        let mut out = String::new();
        let mut chars = quoted.chars();
        while let Some(ch) = chars.next() {
            if ch == '\\' {
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some(other) => out.push(other),
                    None => prop_assert!(false, "dangling escape"),
                }
            } else {
                prop_assert!(ch != '"' && ch != '\n');
                out.push(ch);
            }
        }
        prop_assert_eq!(out, value);
    }
}
