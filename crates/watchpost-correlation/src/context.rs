//! The request context beyond the request itself: a task-local, a helper for spawned tasks, and
//! header injection for outgoing HTTP requests.
//!
//! The correlation layer runs the rest of the request inside [`scope`], so code anywhere
//! below it can ask for [`current`]. A task spawned from a handler does not inherit task
//! locals; wrap its future with [`in_current_request`] (or use [`spawn`]) to carry the
//! context and the request's tracing span along.

use std::future::Future;

use http::{HeaderMap, HeaderValue};
use tracing::Instrument;
use watchpost_core::RequestContext;

use crate::ids::CORRELATION_ID_HEADER;
use crate::traceparent::{FLAG_SAMPLED, format_traceparent};

tokio::task_local! {
    static CURRENT: RequestContext;
}

/// The context of the request this task is serving, if any.
pub fn current() -> Option<RequestContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `f` with a reference to the current context, if any (no clone).
pub fn with_current<R>(f: impl FnOnce(Option<&RequestContext>) -> R) -> R {
    let mut f = Some(f);
    let result = CURRENT.try_with(|ctx| f.take().map(|f| f(Some(ctx))));
    match result {
        Ok(Some(r)) => r,
        _ => match f.take() {
            Some(f) => f(None),
            None => unreachable!("the closure runs at most once"),
        },
    }
}

/// Runs `future` with `ctx` as the current request context.
pub fn scope<F: Future>(ctx: RequestContext, future: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(ctx, future)
}

/// [`scope`] with a nameable type, for the layer's response future.
pub(crate) fn task_local_future<F: Future>(
    ctx: RequestContext,
    future: F,
) -> tokio::task::futures::TaskLocalFuture<RequestContext, F> {
    CURRENT.scope(ctx, future)
}

/// Runs `f` synchronously with `ctx` as the current request context.
pub fn sync_scope<R>(ctx: RequestContext, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(ctx, f)
}

/// Wraps `future` so it runs with the current request context and tracing span, wherever it is polled.
pub fn in_current_request<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let span = tracing::Span::current();
    let ctx = current();
    async move {
        match ctx {
            Some(ctx) => CURRENT.scope(ctx, future.instrument(span)).await,
            None => future.instrument(span).await,
        }
    }
}

/// `tokio::spawn` that carries the current request context and tracing span into the task.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(in_current_request(future))
}

/// Adds `traceparent` (when the context knows a trace) and `X-Correlation-ID` to an outgoing request's
/// headers, so the next service joins the trace and the business operation.
pub fn inject_headers(ctx: &RequestContext, headers: &mut HeaderMap) {
    if let (Some(trace_id), Some(span_id)) = (ctx.trace_id, ctx.span_id) {
        let flags = if ctx.sampled { FLAG_SAMPLED } else { 0 };
        if let Ok(value) = HeaderValue::from_str(&format_traceparent(trace_id, span_id, flags)) {
            headers.insert(crate::traceparent::TRACEPARENT, value);
        }
    }
    // Correlation ids passed the validator or were generated, so they are always valid header values.
    if let Ok(value) = HeaderValue::from_str(ctx.correlation_id.as_str()) {
        headers.insert(CORRELATION_ID_HEADER, value);
    }
}

/// [`inject_headers`] with the current request context; does nothing outside a request.
pub fn inject_current(headers: &mut HeaderMap) {
    with_current(|ctx| {
        if let Some(ctx) = ctx {
            inject_headers(ctx, headers);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchpost_core::{SpanId, TraceId};

    #[tokio::test]
    async fn context_follows_spawned_tasks_and_outgoing_headers() {
        let ctx = RequestContext::new().with_trace(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap_or(TraceId([1; 16])),
            SpanId::from_hex("00f067aa0ba902b7").unwrap_or(SpanId([1; 8])),
            true,
        );
        let id = ctx.request_id.clone();
        assert!(current().is_none());
        let seen = scope(ctx, async { spawn(async { current() }).await })
            .await
            .ok()
            .flatten();
        assert_eq!(seen.map(|c| c.request_id), Some(id));

        let ctx = RequestContext::new().with_trace(TraceId([7; 16]), SpanId([9; 8]), true);
        let mut headers = HeaderMap::new();
        sync_scope(ctx.clone(), || inject_current(&mut headers));
        assert_eq!(
            headers["traceparent"],
            "00-07070707070707070707070707070707-0909090909090909-01"
        );
        assert_eq!(headers["x-correlation-id"], ctx.correlation_id.as_str());
    }
}
