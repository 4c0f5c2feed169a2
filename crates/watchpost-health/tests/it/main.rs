//! Integration tests of watchpost-health: the registry, the endpoints, and the built-in checks
//! against real PostgreSQL, Redis, SQLite, HTTP and filesystems (faults through `FaultProxy`).

mod checks;
mod endpoints;
mod faults;
mod openapi;
mod registry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use watchpost_core::Principal;
use watchpost_health::{CheckOutcome, HealthCheck, check_fn};

/// An answer of the router.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

/// GETs `uri` from `app`, as `principal` when given; bounded to 10 s.
pub(crate) async fn get(app: &Router, uri: &str, principal: Option<Principal>) -> Answer {
    let mut request = Request::builder().uri(uri);
    if let Some(p) = principal {
        request = request.extension(p);
    }
    let request = request.body(Body::empty()).expect("valid request");
    let response = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(request))
        .await
        .unwrap_or_else(|_| panic!("GET {uri} took more than 10 s"))
        .expect("infallible router");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub(crate) fn root() -> Principal {
    Principal::new("root", "root", None, watchpost_core::Role::Root)
}

pub(crate) fn tenant() -> Principal {
    Principal::new(
        "k1",
        "ci",
        Some("acme".into()),
        watchpost_core::Role::Tenant,
    )
}

/// A check that counts its runs and answers with what the shared cell says.
pub(crate) fn counting(
    counter: Arc<AtomicU64>,
    delay: Duration,
    outcome: CheckOutcome,
) -> impl HealthCheck {
    check_fn(move || {
        let counter = counter.clone();
        let outcome = outcome.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            outcome
        }
    })
}
