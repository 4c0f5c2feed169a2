//! [`AuditLayer`]: records requests the [`AuditPolicy`] selects, with their outcome, in the chosen [`DeliveryMode`].
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use axum::{Router, routing::post};
//! use watchpost_audit::{AuditLayer, Auditor, MemoryStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let auditor = Auditor::builder(Arc::new(MemoryStore::new())).start().unwrap();
//! let app: Router = Router::new()
//!     .route("/things", post(|| async { "created" }))
//!     .layer(AuditLayer::new(auditor));
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::Request;
use pin_project_lite::pin_project;
use serde_json::Value;
use tower_layer::Layer;
use tower_service::Service;
use watchpost_core::{Principal, Problem, RequestContext};

use crate::auditor::Auditor;
use crate::error::AuditError;
use crate::event::{Action, Actor, NewEvent, Outcome, OutcomeResult};
use crate::policy::{AuditPolicy, Level, is_read};
use crate::redact::MAX_EVENT_BYTES;

/// When a request's audit record must be durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Record durably before the handler runs (503 and no handler when impossible); record the completion durably before answering.
    FailClosed,
    /// The response waits until the completion record is durable (503 when impossible).
    Blocking,
    /// The completion is queued; the response does not wait.
    Async,
}

impl std::str::FromStr for DeliveryMode {
    type Err = AuditError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fail_closed" | "fail-closed" => Ok(Self::FailClosed),
            "blocking" => Ok(Self::Blocking),
            "async" => Ok(Self::Async),
            other => Err(AuditError::Config(format!(
                "unknown delivery mode {other:?}: expected fail_closed, blocking or async"
            ))),
        }
    }
}

/// Records audited requests; see the module docs.
#[derive(Debug, Clone)]
pub struct AuditLayer {
    auditor: Auditor,
    policy: Arc<AuditPolicy>,
    mutating: DeliveryMode,
    reads: DeliveryMode,
    max_body_bytes: usize,
}

impl AuditLayer {
    /// The default policy; `blocking` for mutating requests, `async` for reads.
    pub fn new(auditor: Auditor) -> Self {
        Self {
            auditor,
            policy: Arc::new(AuditPolicy::default()),
            mutating: DeliveryMode::Blocking,
            reads: DeliveryMode::Async,
            max_body_bytes: MAX_EVENT_BYTES,
        }
    }

    /// Sets the policy.
    #[must_use]
    pub fn policy(mut self, policy: AuditPolicy) -> Self {
        self.policy = Arc::new(policy);
        self
    }

    /// Sets the delivery mode for mutating requests (everything but GET, HEAD, OPTIONS).
    #[must_use]
    pub fn mutating_mode(mut self, mode: DeliveryMode) -> Self {
        self.mutating = mode;
        self
    }

    /// Sets the delivery mode for reads.
    #[must_use]
    pub fn read_mode(mut self, mode: DeliveryMode) -> Self {
        self.reads = mode;
        self
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Audit {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`AuditLayer`] produces.
#[derive(Debug, Clone)]
pub struct Audit<S> {
    inner: S,
    layer: AuditLayer,
}

impl<S> Audit<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

pin_project! {
    /// The response future of [`Audit`].
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        Passthrough { #[pin] future: F },
        Audited { future: BoxFuture<'static, Result<Response, E>> },
    }
}

impl<F, E> std::fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => future.poll(cx),
            KindProj::Audited { future } => future.as_mut().poll(cx),
        }
    }
}

fn problem_response(problem: Problem, ext: &http::Extensions) -> Response {
    problem.fill_from(ext).to_http_response().into_response()
}

fn body_payload(bytes: &[u8], content_type: Option<&str>) -> Option<Value> {
    if bytes.is_empty() {
        return None;
    }
    if content_type.is_some_and(|c| c.contains("json"))
        && let Ok(v) = serde_json::from_slice::<Value>(bytes)
    {
        return Some(v);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(Value::String(text.to_owned())),
        Err(_) => Some(serde_json::json!({ "$binaryBytes": bytes.len() })),
    }
}

impl<S> Service<Request<Body>> for Audit<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // Decide on borrowed values first: most requests are not recorded and copy nothing.
        let level = {
            let extensions = req.extensions();
            let ctx = extensions.get::<RequestContext>();
            let route = extensions
                .get::<MatchedPath>()
                .map(MatchedPath::as_str)
                .or_else(|| ctx.and_then(|c| c.route.as_deref()));
            let role = extensions
                .get::<Principal>()
                .or_else(|| ctx.and_then(|c| c.principal.as_ref()))
                .map(|p| p.role);
            self.layer.policy.level(req.method(), route, role)
        };
        if level == Level::None {
            return ResponseFuture {
                kind: Kind::Passthrough {
                    future: self.inner.call(req),
                },
            };
        }
        let ctx = req.extensions().get::<RequestContext>().cloned();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|m| m.as_str().to_owned())
            .or_else(|| {
                ctx.as_ref()
                    .and_then(|c| c.route.as_deref().map(str::to_owned))
            });
        let principal = req
            .extensions()
            .get::<Principal>()
            .cloned()
            .or_else(|| ctx.as_ref().and_then(|c| c.principal.clone()));

        let mut event = NewEvent::new(Action::from_method(req.method()));
        if let Some(ctx) = &ctx {
            event = event.context(ctx);
        }
        if let Some(p) = &principal {
            event.actor = Actor::from(p);
        }
        event.method = Some(req.method().as_str().to_owned());
        event.route = route;
        event.path = Some(req.uri().path().to_owned());
        event.user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mode = if is_read(req.method()) {
            self.layer.reads
        } else {
            self.layer.mutating
        };
        let auditor = self.layer.auditor.clone();
        let max_body = self.layer.max_body_bytes;
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);

        let future = Box::pin(async move {
            let mut req = req;
            if level == Level::Request {
                let (parts, body) = req.into_parts();
                let bytes = match axum::body::to_bytes(body, max_body).await {
                    Ok(b) => b,
                    Err(_) => {
                        return Ok(problem_response(
                            Problem::payload_too_large(max_body as u64)
                                .with_instance(parts.uri.path()),
                            &parts.extensions,
                        ));
                    }
                };
                let ct = parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok());
                event.payload = body_payload(&bytes, ct);
                req = Request::from_parts(parts, Body::from(bytes));
            }
            let ext = req.extensions().clone();
            if mode == DeliveryMode::FailClosed {
                let pending = event.clone().outcome(Outcome {
                    result: OutcomeResult::Pending,
                    status: None,
                });
                if let Err(e) = auditor.record(pending).await {
                    tracing::error!(error = %e, "refusing a request that cannot be audited (fail-closed)");
                    return Ok(problem_response(
                        Problem::service_unavailable(
                            "this request cannot be recorded in the audit trail right now, so it was not carried out; retry later",
                        ),
                        &ext,
                    ));
                }
            }
            let response = inner.call(req).await?;
            let done = event.outcome(Outcome::from_status(response.status()));
            match mode {
                DeliveryMode::Async => {
                    if let Err(e) = auditor.record_async(done).await {
                        tracing::error!(error = %e, "cannot queue an audit event");
                    }
                    Ok(response)
                }
                DeliveryMode::Blocking | DeliveryMode::FailClosed => {
                    match auditor.record(done).await {
                        Ok(_) => Ok(response),
                        Err(e) => {
                            tracing::error!(error = %e, "the completion of a request could not be audited");
                            Ok(problem_response(
                                Problem::service_unavailable(
                                    "the request was carried out but its audit record could not be made durable; check before retrying",
                                ),
                                &ext,
                            ))
                        }
                    }
                }
            }
        });
        ResponseFuture {
            kind: Kind::Audited { future },
        }
    }
}
