//! The HTTP endpoints: `GET /metrics` (Prometheus text or OpenMetrics, gzip when asked,
//! optional bearer token) and `GET /metrics/summary` (root only, JSON).

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;
use watchpost_core::{Access, Principal, Problem, authorize};

use crate::Metrics;
use crate::encode::Format;

/// The routes; mount with `Router::merge` or `Router::nest`.
pub(crate) fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/metrics/summary", get(summary_handler))
        .with_state(metrics)
}

/// Picks the format from `Accept`: OpenMetrics when it is accepted at least as much as text.
pub fn negotiate(headers: &HeaderMap) -> Format {
    let mut openmetrics = 0.0f32;
    let mut text = 0.0f32;
    for accept in headers.get_all(header::ACCEPT) {
        let Ok(accept) = accept.to_str() else {
            continue;
        };
        for entry in accept.split(',') {
            let mut parts = entry.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
    }
    if openmetrics > 0.0 && openmetrics >= text {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    }
}

/// Whether `Accept-Encoding` accepts gzip (with a non-zero weight).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|entry| {
            let mut parts = entry.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
}

fn problem_response(problem: Problem, extensions: &http::Extensions) -> Response {
    problem
        .fill_from(extensions)
        .to_http_response()
        .into_response()
}

/// Checks the scrape token when one is configured (a root principal passes too):
/// `Some(401 response)` when the request is refused.
fn refuse_without_token(expected: Option<&str>, req: &Request) -> Option<Response> {
    let expected = expected?;
    if req
        .extensions()
        .get::<Principal>()
        .is_some_and(Principal::is_root)
    {
        return None;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    // Constant time in the token's content; only its length can be learned from timing.
    let ok = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
    if ok {
        return None;
    }
    let detail = if presented.is_some() {
        "the bearer token sent is not the metrics scrape token"
    } else {
        "this endpoint needs the metrics scrape token: send `Authorization: Bearer <token>`"
    };
    let problem = Problem::new(http::StatusCode::UNAUTHORIZED)
        .with_type(watchpost_core::problem::type_uri("unauthorized"))
        .with_detail(detail);
    let mut response = problem_response(problem, req.extensions());
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"metrics\""),
    );
    Some(response)
}

/// Prometheus scrape endpoint.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    description = "Every metric of the process. Prometheus text format 0.0.4 by default; OpenMetrics 1.0 (with exemplars) when `Accept` asks for `application/openmetrics-text`; gzip when `Accept-Encoding` allows it. Needs `Authorization: Bearer <token>` when a scrape token is configured.",
    responses(
        (status = 200, description = "The exposition", content_type = "text/plain", body = String),
        (status = 401, description = "Scrape token missing or wrong", content_type = "application/problem+json"),
    ),
))]
pub(crate) async fn metrics_handler(State(metrics): State<Metrics>, req: Request) -> Response {
    if let Some(response) = refuse_without_token(metrics.token(), &req) {
        return response;
    }
    let format = negotiate(req.headers());
    let body = metrics.render(format);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Encoding"),
    );
    #[cfg(feature = "gzip")]
    if accepts_gzip(req.headers()) {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        if encoder.write_all(body.as_bytes()).is_ok()
            && let Ok(compressed) = encoder.finish()
        {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            return (headers, compressed).into_response();
        }
    }
    (headers, body).into_response()
}

/// JSON snapshot of request counts and latencies; root only.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/metrics/summary",
    tag = "metrics",
    description = "Request counts by status and method, mean and percentile durations since start. Needs a root API key.",
    responses(
        (status = 200, description = "The snapshot", body = crate::summary::SummarySnapshot),
        (status = 401, description = "No API key, or a refused one", content_type = "application/problem+json"),
        (status = 403, description = "Not a root key", content_type = "application/problem+json"),
    ),
))]
pub(crate) async fn summary_handler(State(metrics): State<Metrics>, req: Request) -> Response {
    match authorize(req.extensions(), Access::Root) {
        Ok(_) => {
            let mut response = axum::Json(metrics.summary()).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(problem) => problem_response(problem, req.extensions()),
    }
}

/// The OpenAPI document of [`router`].
#[cfg(feature = "openapi")]
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(metrics_handler, summary_handler),
    components(schemas(crate::summary::SummarySnapshot))
)]
pub(crate) struct ApiDoc;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn negotiation_follows_accept() {
        assert_eq!(negotiate(&HeaderMap::new()), Format::Prometheus);
        assert_eq!(
            negotiate(&headers(header::ACCEPT, "application/openmetrics-text")),
            Format::OpenMetrics
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            negotiate(&headers(
                header::ACCEPT,
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        assert_eq!(
            negotiate(&headers(
                header::ACCEPT,
                "text/plain, application/openmetrics-text;q=0.5"
            )),
            Format::Prometheus
        );
        assert_eq!(
            negotiate(&headers(header::ACCEPT, "application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }

    #[test]
    fn gzip_is_taken_only_when_accepted() {
        assert!(accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip")));
        assert!(accepts_gzip(&headers(
            header::ACCEPT_ENCODING,
            "br;q=1, GZIP;q=0.5"
        )));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "gzip;q=0")));
        assert!(!accepts_gzip(&headers(header::ACCEPT_ENCODING, "identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
