//! The HTTP endpoints: [`router`] and its handlers (`/health`, `/health/live`, `/health/ready`,
//! `/health/ready/{check}`, `/ready`, `/health/detailed`) and the query conventions
//! (`?verbose`, `?exclude=`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderValue, StatusCode, header};
use watchpost_core::{Access, HealthStatus, Problem, authorize};

use crate::body::{
    DbBody, HealthJson, HealthJsonEntry, ProbeBody, ProbeCheckBody, ProcessBody, ReadyBody,
    ServiceBody,
};
use crate::config::ShowDetails;
use crate::registry::{CheckReport, HealthRegistry, Probe, ProbeReport};

/// The media type of the detailed view.
pub const HEALTH_JSON: &str = "application/health+json";

/// Every path [`router`] serves (axum syntax).
pub const PATHS: &[&str] = &[
    "/health",
    "/health/live",
    "/health/ready",
    "/health/ready/{check}",
    "/ready",
    "/health/detailed",
];

/// The health endpoints, to mount at the root or under any prefix.
///
/// | path | answers |
/// | --- | --- |
/// | `GET /health` | `{"status":"ok","service":...,"storeBackend":...}`, always 200 |
/// | `GET /health/live` | liveness (200/503); `?verbose`, `?exclude=` |
/// | `GET /health/ready` | readiness (200/503); `?verbose`, `?exclude=` |
/// | `GET /health/ready/{check}` | one check; 404 problem for an unknown name |
/// | `GET /ready` | `{"ok":true,"storeBackend":...,"db":{"ok":true}}` (200/503) |
/// | `GET /health/detailed` | `application/health+json` |
pub fn router(registry: HealthRegistry) -> Router {
    Router::new()
        .route(PATHS[0], get(service))
        .route(PATHS[1], get(live))
        .route(PATHS[2], get(ready))
        .route(PATHS[3], get(ready_one))
        .route(PATHS[4], get(seed_ready))
        .route(PATHS[5], get(detailed))
        .with_state(registry)
}

/// The probe query: `?verbose` and repeatable `?exclude=NAME` (commas also separate names).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ProbeQuery {
    pub(crate) verbose: bool,
    pub(crate) exclude: Vec<String>,
}

impl ProbeQuery {
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut q = ProbeQuery::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match percent_decode(key).as_str() {
                "verbose" => {
                    let v = percent_decode(value);
                    q.verbose = !matches!(v.as_str(), "false" | "0");
                }
                "exclude" => q.exclude.extend(
                    percent_decode(value)
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                _ => {}
            }
        }
        q
    }
}

/// Decodes `%XX` escapes and `+`; malformed escapes are kept as written.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn details_allowed(registry: &HealthRegistry, extensions: &http::Extensions) -> bool {
    match registry.config().show_details {
        ShowDetails::Always => true,
        ShowDetails::Never => false,
        ShowDetails::WhenAuthorized => authorize(extensions, Access::Root).is_ok(),
    }
}

fn with_headers(mut response: Response, content_type: &'static str, max_age: Duration) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={}", max_age.as_secs())) {
        headers.insert(header::CACHE_CONTROL, v);
    }
    response
}

fn json_response(
    status: StatusCode,
    body: &impl serde::Serialize,
    content_type: &'static str,
    max_age: Duration,
) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => with_headers((status, bytes).into_response(), content_type, max_age),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a health body");
            Problem::internal().to_http_response().into_response()
        }
    }
}

#[cfg_attr(
    feature = "openapi",
    utoipa::path(get, path = "/health", tag = "health",
        responses((status = 200, description = "The process answers", body = ServiceBody)))
)]
async fn service(State(registry): State<HealthRegistry>) -> Response {
    let config = registry.config();
    let body = ServiceBody {
        status: "ok",
        service: config.service.clone(),
        store_backend: config.store_backend.clone(),
    };
    let mut response = json_response(StatusCode::OK, &body, "application/json", Duration::ZERO);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg_attr(
    feature = "openapi",
    utoipa::path(get, path = "/health/live", tag = "health",
        params(
            ("verbose" = Option<bool>, Query, description = "Plain-text Kubernetes-style answer"),
            ("exclude" = Option<Vec<String>>, Query, description = "Check names to leave out (repeatable)")
        ),
        responses(
            (status = 200, description = "Alive", body = ProbeBody),
            (status = 503, description = "A liveness check fails", body = ProbeBody)
        ))
)]
async fn live(State(registry): State<HealthRegistry>, request: Request) -> Response {
    let (query, details) = probe_inputs(&registry, &request);
    probe_response(&registry, Probe::Liveness, query, details).await
}

#[cfg_attr(
    feature = "openapi",
    utoipa::path(get, path = "/health/ready", tag = "health",
        params(
            ("verbose" = Option<bool>, Query, description = "Plain-text Kubernetes-style answer"),
            ("exclude" = Option<Vec<String>>, Query, description = "Check names to leave out (repeatable)")
        ),
        responses(
            (status = 200, description = "Ready (pass or warn)", body = ProbeBody),
            (status = 503, description = "Not ready", body = ProbeBody)
        ))
)]
async fn ready(State(registry): State<HealthRegistry>, request: Request) -> Response {
    let (query, details) = probe_inputs(&registry, &request);
    probe_response(&registry, Probe::Readiness, query, details).await
}

/// Read before any await: a borrowed request body is not `Sync`.
fn probe_inputs(registry: &HealthRegistry, request: &Request) -> (ProbeQuery, bool) {
    (
        ProbeQuery::parse(request.uri().query()),
        details_allowed(registry, request.extensions()),
    )
}

async fn probe_response(
    registry: &HealthRegistry,
    probe: Probe,
    query: ProbeQuery,
    details: bool,
) -> Response {
    let report = registry.probe(probe, &query.exclude).await;
    let status = report.status.http_status();
    if query.verbose {
        let text = verbose_text(&report, details);
        return with_headers(
            (status, text).into_response(),
            "text/plain; charset=utf-8",
            report.max_age,
        );
    }
    let body = probe_body(&report, details);
    json_response(status, &body, "application/json", report.max_age)
}

/// Milliseconds with microsecond precision.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn probe_check(check: &CheckReport, details: bool) -> ProbeCheckBody {
    ProbeCheckBody {
        status: check.status,
        critical: check.critical,
        output: if details { check.output.clone() } else { None },
        duration_ms: details.then_some(millis(check.duration)),
    }
}

fn probe_body(report: &ProbeReport, details: bool) -> ProbeBody {
    ProbeBody {
        status: report.status,
        health: report.status.seed_word(),
        phase: report.phase,
        reason: report.lifecycle_failure,
        checks: report
            .checks
            .iter()
            .map(|c| (c.name.clone(), probe_check(c, details)))
            .collect(),
        unknown_excludes: report.unknown_excludes.clone(),
    }
}

fn verbose_line(out: &mut String, check: &CheckReport, details: bool) {
    let reason = if details {
        check.output.as_deref().unwrap_or("no output")
    } else {
        "reason withheld"
    };
    let _ = match check.raw_status {
        HealthStatus::Pass => writeln!(out, "[+]{} ok", check.name),
        HealthStatus::Warn => writeln!(out, "[+]{} warn: {reason}", check.name),
        HealthStatus::Fail if check.critical => writeln!(out, "[-]{} failed: {reason}", check.name),
        HealthStatus::Fail => writeln!(out, "[-]{} failed (non-critical): {reason}", check.name),
    };
}

/// The Kubernetes-style text: one `[+]`/`[-]` line per check, then `<probe> check passed|failed`.
pub(crate) fn verbose_text(report: &ProbeReport, details: bool) -> String {
    let mut out = String::new();
    if report.probe == Probe::Readiness {
        let _ = match report.lifecycle_failure {
            None => writeln!(out, "[+]lifecycle ok"),
            Some(reason) => writeln!(out, "[-]lifecycle failed: {reason}"),
        };
    }
    for check in &report.checks {
        verbose_line(&mut out, check, details);
    }
    if !report.unknown_excludes.is_empty() {
        let names: Vec<String> = report
            .unknown_excludes
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        let _ = writeln!(
            out,
            "warn: some health checks cannot be excluded: no matches for {}",
            names.join(", ")
        );
    }
    let verdict = if report.status == HealthStatus::Fail {
        "failed"
    } else {
        "passed"
    };
    let _ = writeln!(out, "{} check {verdict}", report.probe.verbose_word());
    out
}

#[cfg_attr(
    feature = "openapi",
    utoipa::path(get, path = "/health/ready/{check}", tag = "health",
        params(
            ("check" = String, Path, description = "A registered check's name"),
            ("verbose" = Option<bool>, Query, description = "Plain-text Kubernetes-style answer")
        ),
        responses(
            (status = 200, description = "The check passes (or a non-critical check fails)", body = ProbeBody),
            (status = 503, description = "The check fails", body = ProbeBody),
            (status = 404, description = "No check has this name", content_type = "application/problem+json")
        ))
)]
async fn ready_one(
    State(registry): State<HealthRegistry>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let Some(check) = registry.check(&name).await else {
        return Problem::not_found(format!(
            "no health check is named {name:?}; registered checks: {}",
            registry.check_names().join(", ")
        ))
        .with_instance(
            // Inside a nested router the URI is stripped of the prefix; report what was asked.
            request
                .extensions()
                .get::<axum::extract::OriginalUri>()
                .map_or_else(|| request.uri().path(), |u| u.path()),
        )
        .fill_from(request.extensions())
        .to_http_response()
        .into_response();
    };
    let query = ProbeQuery::parse(request.uri().query());
    let details = details_allowed(&registry, request.extensions());
    let max_age = registry.cache_ttl(&name).unwrap_or_default();
    let report = ProbeReport {
        probe: Probe::Readiness,
        status: check.status,
        phase: registry.lifecycle().phase(),
        lifecycle_failure: None,
        checks: vec![check],
        unknown_excludes: Vec::new(),
        max_age,
    };
    let status = report.status.http_status();
    if query.verbose {
        let mut text = String::new();
        verbose_line(&mut text, &report.checks[0], details);
        let verdict = if report.status == HealthStatus::Fail {
            "failed"
        } else {
            "passed"
        };
        let _ = writeln!(text, "readyz check {verdict}");
        return with_headers(
            (status, text).into_response(),
            "text/plain; charset=utf-8",
            max_age,
        );
    }
    json_response(
        status,
        &probe_body(&report, details),
        "application/json",
        max_age,
    )
}

#[cfg_attr(
    feature = "openapi",
    utoipa::path(get, path = "/ready", tag = "health",
        responses(
            (status = 200, description = "Ready", body = ReadyBody),
            (status = 503, description = "Not ready", body = ReadyBody)
        ))
)]
async fn seed_ready(State(registry): State<HealthRegistry>, request: Request) -> Response {
    let details = details_allowed(&registry, request.extensions());
    let report = registry.probe(Probe::Readiness, &[]).await;
    let config = registry.config();
    let db_report = match &config.db_check {
        None => None,
        Some(name) => match report.checks.iter().find(|c| &c.name == name) {
            Some(c) => Some(c.clone()),
            // Not part of readiness (or the lifecycle answered first): ask the check itself.
            None if report.lifecycle_failure.is_none() => registry.check(name).await,
            None => None,
        },
    };
    let db = config.db_check.as_ref().map(|_| match &db_report {
        Some(c) => DbBody {
            ok: c.status != HealthStatus::Fail,
            error: (details && c.status == HealthStatus::Fail)
                .then(|| c.output.clone())
                .flatten(),
        },
        None => DbBody {
            ok: false,
            error: report.lifecycle_failure.map(str::to_owned),
        },
    });
    let body = ReadyBody {
        ok: report.status != HealthStatus::Fail,
        store_backend: config.store_backend.clone(),
        db,
        reason: report.lifecycle_failure,
    };
    json_response(
        report.status.http_status(),
        &body,
        "application/json",
        report.max_age,
    )
}

fn health_json_entries(
    check: &CheckReport,
    details: bool,
) -> impl Iterator<Item = (String, HealthJsonEntry)> + '_ {
    let main = (
        format!("{}:responseTime", check.name),
        HealthJsonEntry {
            component_type: check.component_type.clone(),
            observed_value: details.then(|| serde_json::json!(millis(check.duration))),
            observed_unit: details.then(|| "ms".to_owned()),
            status: check.status,
            time: check.time,
            output: if details { check.output.clone() } else { None },
        },
    );
    let observations = check.observations.iter().map(move |o| {
        (
            format!("{}:{}", check.name, o.measurement),
            HealthJsonEntry {
                component_type: check.component_type.clone(),
                observed_value: details.then(|| o.value.clone()),
                observed_unit: if details { o.unit.clone() } else { None },
                status: check.status,
                time: check.time,
                output: None,
            },
        )
    });
    std::iter::once(main).chain(observations)
}

#[cfg_attr(
    feature = "openapi",
    utoipa::path(get, path = "/health/detailed", tag = "health",
        responses(
            (status = 200, description = "Pass or warn", body = HealthJson, content_type = "application/health+json"),
            (status = 503, description = "Fail", body = HealthJson, content_type = "application/health+json")
        ))
)]
async fn detailed(State(registry): State<HealthRegistry>, request: Request) -> Response {
    let details = details_allowed(&registry, request.extensions());
    let report = registry.probe(Probe::Detailed, &[]).await;
    let config = registry.config();
    let mut checks: BTreeMap<String, Vec<HealthJsonEntry>> = BTreeMap::new();
    for check in &report.checks {
        for (key, entry) in health_json_entries(check, details) {
            checks.entry(key).or_default().push(entry);
        }
    }
    let body = HealthJson {
        status: report.status,
        health: report.status.seed_word(),
        version: config.version.clone(),
        release_id: config.release_id.clone(),
        service_id: config
            .service_id
            .clone()
            .unwrap_or_else(|| config.service.clone()),
        description: config.description.clone(),
        phase: report.phase,
        checks,
        uptime: registry.uptime().as_secs_f64(),
        timestamp: registry.now(),
        process: details.then(|| ProcessBody {
            resident_memory_mb: crate::process::resident_memory_bytes()
                .map(|b| (b as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0),
            open_connections: registry.open_connections(),
        }),
    };
    json_response(
        report.status.http_status(),
        &body,
        HEALTH_JSON,
        report.max_age,
    )
}

/// The OpenAPI document of [`router`].
#[cfg(feature = "openapi")]
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;

    #[derive(utoipa::OpenApi)]
    #[openapi(
        paths(service, live, ready, ready_one, seed_ready, detailed),
        tags((name = "health", description = "Liveness, readiness and detailed health"))
    )]
    struct HealthApi;

    HealthApi::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_verbose_and_repeated_excludes() {
        let q = ProbeQuery::parse(Some("verbose&exclude=redis&exclude=disk%2Cmemory&x=1"));
        assert!(q.verbose);
        assert_eq!(q.exclude, ["redis", "disk", "memory"]);
        assert_eq!(ProbeQuery::parse(None), ProbeQuery::default());
        assert!(!ProbeQuery::parse(Some("verbose=false")).verbose);
        assert!(ProbeQuery::parse(Some("verbose=1")).verbose);
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%4"), "%4");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn encode(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    proptest! {
        /// Names written as repeated, fully escaped `exclude=` parameters come back as written.
        #[test]
        fn excludes_round_trip(names in proptest::collection::vec("[A-Za-z0-9._-]{1,20}", 0..6), verbose in any::<bool>()) {
            let mut parts: Vec<String> = names.iter().map(|n| format!("exclude={}", encode(n))).collect();
            if verbose {
                parts.push("verbose".to_owned());
            }
            let q = ProbeQuery::parse(Some(&parts.join("&")));
            prop_assert_eq!(q.exclude, names);
            prop_assert_eq!(q.verbose, verbose);
        }

        /// Any query string parses without panicking.
        #[test]
        fn any_query_parses(query in ".{0,64}") {
            let _ = ProbeQuery::parse(Some(&query));
            let _ = percent_decode(&query);
        }
    }
}
