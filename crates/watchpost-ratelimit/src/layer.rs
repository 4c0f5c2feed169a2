//! [`RateLimitLayer`] and the [`RateLimit`] service: 429 before any work, IETF headers on
//! every limited response.

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
use tower_layer::Layer;
use tower_service::Service;
use watchpost_core::{Principal, RequestContext};

use crate::decision::{Decision, Degraded};
use crate::headers::{RateLimitFields, quota_exceeded, retry_after};
use crate::key::RateLimitKey;
use crate::limiter::{DenialEvent, RateLimiter};
use crate::metrics::DecisionLabel;
use crate::policy::PolicySet;

/// Applies a [`RateLimiter`] to every request of the wrapped service.
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: RateLimiter,
}

impl RateLimitLayer {
    /// A layer enforcing `limiter`.
    pub fn new(limiter: RateLimiter) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The rate-limiting service.
#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    limiter: RateLimiter,
}

impl<S> RateLimit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, limiter: RateLimiter) -> Self {
        Self { inner, limiter }
    }

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

/// What to do once decided.
enum Outcome {
    Pass(Option<RateLimitFields>),
    Refuse(Response),
}

/// Counts, logs and calls the hook for a decision; returns what the response gets.
fn conclude(
    limiter: &RateLimiter,
    set: &PolicySet,
    key: &RateLimitKey,
    route: Option<&str>,
    decision: &Decision,
    extensions: &http::Extensions,
) -> Outcome {
    let inner = &limiter.inner;
    let binding = decision.binding_policy();
    match decision.degraded_mode() {
        Some(Degraded::FailOpen) => {
            set.count(binding, DecisionLabel::FailOpen);
            return Outcome::Pass(None);
        }
        Some(Degraded::FailClosed) => set.count(binding, DecisionLabel::FailClosed),
        None => {}
    }
    let legacy = inner.config.legacy_headers;
    if decision.allowed() {
        set.count(binding, DecisionLabel::Allowed);
        return Outcome::Pass(Some(RateLimitFields::new(set, decision, legacy)));
    }
    let shadow = inner.config.shadow && decision.degraded_mode().is_none();
    if decision.degraded_mode().is_none() {
        set.count(
            binding,
            if shadow {
                DecisionLabel::ShadowDenied
            } else {
                DecisionLabel::Denied
            },
        );
    }
    let policy = set
        .iter()
        .nth(binding)
        .unwrap_or_else(|| &set.policies[0].1);
    tracing::info!(
        target: "watchpost_ratelimit",
        key_kind = key.kind(),
        key = %key,
        policy = policy.name(),
        route = route.unwrap_or(""),
        retry_after_ms = decision.retry_after_ms(),
        shadow,
        "rate limit exceeded"
    );
    if let Some(hook) = &inner.on_deny {
        hook(&DenialEvent {
            key,
            policy,
            route,
            retry_after_ms: decision.retry_after_ms(),
            shadow,
        });
    }
    let fields = RateLimitFields::new(set, decision, legacy);
    if shadow {
        return Outcome::Pass(Some(fields));
    }
    let problem = quota_exceeded(set, decision).fill_from(extensions);
    let mut response = problem.to_http_response().into_response();
    let headers = response.headers_mut();
    fields.apply(headers);
    headers.insert(http::header::RETRY_AFTER, retry_after(set, decision));
    Outcome::Refuse(response)
}

impl<S, ReqBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let limiter = &self.limiter;
        if !limiter.inner.config.enabled || limiter.is_exempt_path(req.uri().path()) {
            return ResponseFuture::calling(self.inner.call(req), None);
        }
        let (parts, body) = req.into_parts();
        let principal = parts.extensions.get::<Principal>().or_else(|| {
            parts
                .extensions
                .get::<RequestContext>()
                .and_then(|c| c.principal.as_ref())
        });
        if let Some(p) = principal
            && limiter.inner.config.exempt_roles.contains(&p.role)
        {
            return ResponseFuture::calling(
                self.inner.call(Request::from_parts(parts, body)),
                None,
            );
        }
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let set = limiter.policies_for(route, principal);
        let key = limiter.key_for(&parts);
        if let Some(decision) = limiter.try_check_now(&key, set, 1) {
            return match conclude(limiter, set, &key, route, &decision, &parts.extensions) {
                Outcome::Pass(fields) => ResponseFuture::calling(
                    self.inner.call(Request::from_parts(parts, body)),
                    fields,
                ),
                Outcome::Refuse(response) => ResponseFuture::ready(response),
            };
        }
        // The store needs I/O: take the service that was made ready and leave a clone behind.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let limiter = limiter.clone();
        let set: Arc<PolicySet> = set.clone();
        let route = route.map(str::to_owned);
        ResponseFuture {
            state: State::Deciding {
                fut: Box::pin(async move {
                    let decision = limiter.check(&key, &set, 1).await;
                    match conclude(
                        &limiter,
                        &set,
                        &key,
                        route.as_deref(),
                        &decision,
                        &parts.extensions,
                    ) {
                        Outcome::Pass(fields) => {
                            Step::Call(ready.call(Request::from_parts(parts, body)), fields)
                        }
                        Outcome::Refuse(response) => Step::Respond(response),
                    }
                }),
            },
        }
    }
}

enum Step<F> {
    Call(F, Option<RateLimitFields>),
    Respond(Response),
}

pin_project! {
    /// The response future of [`RateLimit`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Deciding { fut: BoxFuture<'static, Step<F>> },
        Calling { #[pin] fut: F, fields: Option<RateLimitFields> },
        Ready { response: Option<Response> },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    fn calling(fut: F, fields: Option<RateLimitFields>) -> Self {
        Self {
            state: State::Calling { fut, fields },
        }
    }

    fn ready(response: Response) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Deciding { fut } => {
                    let step = std::task::ready!(fut.as_mut().poll(cx));
                    let next = match step {
                        Step::Call(fut, fields) => State::Calling { fut, fields },
                        Step::Respond(response) => State::Ready {
                            response: Some(response),
                        },
                    };
                    this.state.set(next);
                }
                StateProj::Calling { fut, fields } => {
                    let mut response = std::task::ready!(fut.poll(cx))?;
                    if let Some(fields) = fields.take() {
                        fields.apply(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Ready { response } => {
                    return match response.take() {
                        Some(r) => Poll::Ready(Ok(r)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
