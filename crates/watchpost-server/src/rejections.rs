//! [`ProblemBodiesLayer`]: statuses the framework itself produces (extractor rejections, body
//! limits, 405) come with a plain-text body; this innermost layer rewrites them as
//! `application/problem+json` with the request id and the path as the instance.
//!
//! Bodies chosen by handlers (problem, health+json, Kubernetes-style text) are left alone: no
//! handler answers these statuses in plain text. A response that needs no rewriting passes through
//! the response future without an allocation; only a rewrite (rare) boxes a future to read the
//! framework's text.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Uri, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use watchpost_core::{Problem, RequestContext, RequestId};

/// Statuses rewritten when their body is not already a problem.
const FRAMEWORK_STATUSES: &[u16] = &[400, 405, 411, 413, 415, 422];

/// The largest framework body read back to become the problem's detail.
const MAX_REJECTION_TEXT: usize = 2048;

/// Rewrites framework rejections as problem+json; `limit` is the body limit a 413 names.
#[derive(Debug, Clone, Copy)]
pub struct ProblemBodiesLayer {
    limit: usize,
}

impl ProblemBodiesLayer {
    /// A layer whose 413 problems name `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for ProblemBodiesLayer {
    type Service = ProblemBodies<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProblemBodies {
            inner,
            limit: self.limit,
        }
    }
}

/// The service made by [`ProblemBodiesLayer`].
#[derive(Debug, Clone)]
pub struct ProblemBodies<S> {
    inner: S,
    limit: usize,
}

impl<S, B> Service<Request<B>> for ProblemBodies<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let origin = Origin {
            uri: request.uri().clone(),
            request_id: request
                .extensions()
                .get::<RequestContext>()
                .map(|c| c.request_id.clone()),
            limit: self.limit,
        };
        ResponseFuture {
            state: State::Inner {
                future: self.inner.call(request),
                origin: Some(origin),
            },
        }
    }
}

/// What a rewrite needs to know about the request.
struct Origin {
    uri: Uri,
    request_id: Option<RequestId>,
    limit: usize,
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Inner { #[pin] future: F, origin: Option<Origin> },
        Rewriting { future: BoxFuture<'static, Response> },
    }
}

pin_project! {
    /// The response future of [`ProblemBodies`].
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
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
            let next = match this.state.as_mut().project() {
                StateProj::Inner { future, origin } => {
                    let response = ready!(future.poll(cx))?;
                    match origin.take() {
                        Some(origin) if needs_rewrite(&response) => State::Rewriting {
                            future: Box::pin(rewrite(response, origin)),
                        },
                        _ => return Poll::Ready(Ok(response)),
                    }
                }
                StateProj::Rewriting { future } => {
                    return Poll::Ready(Ok(ready!(future.as_mut().poll(cx))));
                }
            };
            this.state.set(next);
        }
    }
}

fn needs_rewrite(response: &Response) -> bool {
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    !is_problem && FRAMEWORK_STATUSES.contains(&response.status().as_u16())
}

async fn rewrite(response: Response, origin: Origin) -> Response {
    let status = response.status();
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let mut problem = match status.as_u16() {
        413 => Problem::payload_too_large(origin.limit as u64),
        405 => Problem::method_not_allowed(),
        _ => {
            let detail = if text.is_empty() {
                status
                    .canonical_reason()
                    .unwrap_or("bad request")
                    .to_owned()
            } else {
                text
            };
            Problem::new(status)
                .with_type(watchpost_core::problem::type_uri("bad-request"))
                .with_detail(detail)
        }
    }
    .with_instance(origin.uri.path());
    if let Some(id) = origin.request_id {
        problem = problem.with_request_id(id.as_str());
    }
    let mut rendered = problem.to_http_response().into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        rendered.headers_mut().insert(header::ALLOW, allow.clone());
    }
    if status.as_u16() == 413 {
        rendered
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    rendered
}
