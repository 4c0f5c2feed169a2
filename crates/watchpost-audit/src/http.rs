//! The HTTP API: `POST /audit/events`, `GET /audit/events`, `GET /audit/events/{id}`,
//! `GET /audit/export` (NDJSON) and `GET /audit/verify`, mounted with [`router`].
//!
//! Every error is `application/problem+json`. The actor of a posted event is always the
//! authenticated caller (a [`Principal`] in the request extensions); actor fields in the body
//! are ignored. A tenant key sees only its tenant's events; root sees all.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use watchpost_core::{Access, Principal, Problem, RequestContext, Role, authorize};

use crate::auditor::Auditor;
use crate::error::AuditError;
use crate::event::{Action, Actor, AuditEvent, NewEvent, Outcome, OutcomeResult};
use crate::redact::MAX_EVENT_BYTES;
use crate::store::{Cursor, EventQuery, MAX_PAGE};
use crate::verify::{VerifyOptions, verify};

#[derive(Clone)]
struct ApiState {
    auditor: Auditor,
    verify: Arc<VerifyOptions>,
}

/// The audit endpoints; checkpoints signed by the auditor's own key are trusted by `/audit/verify`.
pub fn router(auditor: Auditor) -> Router {
    let options = VerifyOptions {
        trusted_keys: vec![auditor.public_key_hex().to_owned()],
        max_uncheckpointed: 0,
    };
    router_with(auditor, options)
}

/// The audit endpoints with explicit verification options (for example the previous signing keys after a rotation).
pub fn router_with(auditor: Auditor, verify: VerifyOptions) -> Router {
    let state = ApiState {
        auditor,
        verify: Arc::new(verify),
    };
    Router::new()
        .route("/audit/events", get(list_events).post(post_event))
        .route("/audit/events/{id}", get(get_event))
        .route("/audit/export", get(export_events))
        .route("/audit/verify", get(verify_trail))
        .with_state(state)
}

fn problem(p: Problem, req_ext: &http::Extensions, path: &str) -> Response {
    p.with_instance(path)
        .fill_from(req_ext)
        .to_http_response()
        .into_response()
}

/// The caller (any API key) and its filters as an [`EventQuery`] (tenant keys confined to their
/// tenant), or the problem response: shared by the listing and the export.
fn authorized_query(parts: &http::request::Parts) -> Result<EventQuery, Response> {
    let path = parts.uri.path();
    let principal = authorize(&parts.extensions, Access::AnyKey)
        .map_err(|p| problem(p, &parts.extensions, path))?;
    let Query(params) =
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri).map_err(|e| {
            problem(
                Problem::bad_request(format!("the query string cannot be read: {e}")),
                &parts.extensions,
                path,
            )
        })?;
    parse_query(&params, &principal).map_err(|p| problem(*p, &parts.extensions, path))
}

fn error_problem(e: &AuditError) -> Problem {
    match e {
        AuditError::EventTooLarge { limit, .. } => Problem::payload_too_large(*limit as u64),
        AuditError::Config(msg) => Problem::bad_request(msg.clone()),
        AuditError::NotDurable(_)
        | AuditError::SpoolFull { .. }
        | AuditError::Timeout { .. }
        | AuditError::WriterStopped => {
            Problem::service_unavailable("the audit trail is unavailable; retry later")
        }
        _ => Problem::internal(),
    }
}

/// The body of `POST /audit/events`. Actor fields are not accepted: the caller is the actor.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PostedEvent {
    /// What was done (`create`, `key_revoked`, or a custom word).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub action: Action,
    /// When it happened (RFC 3339); now when absent.
    pub occurred_at: Option<String>,
    /// Resource kind.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// `success` (default) or `failure`.
    pub outcome: Option<String>,
    /// HTTP status of the operation, when there was one.
    pub status: Option<u16>,
    /// HTTP method of the operation.
    pub method: Option<String>,
    /// Route template of the operation.
    pub route: Option<String>,
    /// Path of the operation.
    pub path: Option<String>,
    /// Correlation id; the request's when absent.
    pub correlation_id: Option<String>,
    /// W3C trace id.
    pub trace_id: Option<String>,
    /// Details (redacted, bounded).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Option<Value>,
}

/// The answer to `POST /audit/events`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// The new event's id.
    pub id: Uuid,
}

/// A page of events.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// Events, newest first.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Records an event sent by another service; the actor is the calling key.
#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/audit/events", tag = "audit",
    request_body = PostedEvent,
    responses(
        (status = 201, description = "recorded durably", body = Recorded),
        (status = 400, description = "malformed JSON or fields", content_type = "application/problem+json"),
        (status = 401, description = "no valid API key", content_type = "application/problem+json"),
        (status = 413, description = "event over 1 MiB", content_type = "application/problem+json"),
        (status = 503, description = "the audit trail cannot take events", content_type = "application/problem+json"),
    )
))]
async fn post_event(State(s): State<ApiState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let principal = match authorize(&parts.extensions, Access::AnyKey) {
        Ok(p) => p,
        Err(p) => return problem(p, &parts.extensions, &path),
    };
    let bytes = match axum::body::to_bytes(body, MAX_EVENT_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return problem(
                Problem::payload_too_large(MAX_EVENT_BYTES as u64),
                &parts.extensions,
                &path,
            );
        }
    };
    let posted: PostedEvent = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => {
            return problem(
                Problem::bad_request(format!("the body is not a valid audit event: {e}")),
                &parts.extensions,
                &path,
            );
        }
    };
    let occurred_at = match posted
        .occurred_at
        .as_deref()
        .map(DateTime::parse_from_rfc3339)
        .transpose()
    {
        Ok(t) => t.map(|t| t.to_utc()),
        Err(e) => {
            return problem(
                Problem::bad_request(format!("occurredAt is not an RFC 3339 time: {e}")),
                &parts.extensions,
                &path,
            );
        }
    };
    let result = match posted.outcome.as_deref() {
        None | Some("success") => OutcomeResult::Success,
        Some("failure") => OutcomeResult::Failure,
        Some(other) => {
            return problem(
                Problem::bad_request(format!("outcome {other:?} is not success or failure")),
                &parts.extensions,
                &path,
            );
        }
    };
    let mut event = NewEvent::new(posted.action);
    if let Some(ctx) = parts.extensions.get::<RequestContext>() {
        event = event.context(ctx);
    }
    // The actor is who authenticated, never what the body says.
    event.actor = Actor::from(&principal);
    event.occurred_at = occurred_at;
    event.resource_type = posted.resource_type;
    event.resource_id = posted.resource_id;
    event.outcome = Outcome {
        result,
        status: posted.status,
    };
    event.method = posted.method;
    event.route = posted.route;
    event.path = posted.path;
    if posted.correlation_id.is_some() {
        event.correlation_id = posted.correlation_id;
    }
    if posted.trace_id.is_some() {
        event.trace_id = posted.trace_id;
    }
    event.user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    event.payload = posted.payload;
    match s.auditor.record(event).await {
        Ok(id) => (http::StatusCode::CREATED, axum::Json(Recorded { id })).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot record a posted audit event");
            problem(error_problem(&e), &parts.extensions, &path)
        }
    }
}

const FILTERS: &[&str] = &[
    "from",
    "to",
    "apiKeyId",
    "tenantId",
    "action",
    "resourceType",
    "resourceId",
    "outcome",
    "correlationId",
    "cursor",
    "limit",
];

fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>, Box<Problem>> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.to_utc())
        .map_err(|e| {
            Box::new(Problem::bad_request(format!(
                "{name} is not an RFC 3339 time ({e}): {v:?}"
            )))
        })
}

fn bad(detail: impl Into<String>) -> Box<Problem> {
    Box::new(Problem::bad_request(detail))
}

/// Reads the filters; refuses unknown names and bad values, and confines tenant keys to their tenant.
fn parse_query(
    params: &HashMap<String, String>,
    principal: &Principal,
) -> Result<EventQuery, Box<Problem>> {
    if let Some(unknown) = params.keys().find(|k| !FILTERS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown filter {unknown:?}; the filters are {}",
            FILTERS.join(", ")
        )));
    }
    let text = |k: &str| params.get(k).filter(|v| !v.is_empty()).cloned();
    let mut q = EventQuery {
        from: params
            .get("from")
            .map(|v| parse_time("from", v))
            .transpose()?,
        to: params.get("to").map(|v| parse_time("to", v)).transpose()?,
        api_key_id: text("apiKeyId"),
        tenant_id: text("tenantId"),
        action: text("action"),
        resource_type: text("resourceType"),
        resource_id: text("resourceId"),
        outcome: params
            .get("outcome")
            .map(|v| {
                OutcomeResult::parse(v)
                    .ok_or_else(|| bad(format!("outcome {v:?} is not success, failure or pending")))
            })
            .transpose()?,
        correlation_id: text("correlationId"),
        cursor: params
            .get("cursor")
            .map(|c| Cursor::decode(c).ok_or_else(|| bad("cursor is not one this API returned")))
            .transpose()?,
        limit: match params.get("limit") {
            None => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    bad(format!(
                        "limit must be an integer from 1 to {MAX_PAGE}, got {v:?}"
                    ))
                })?,
        },
    };
    if principal.role == Role::Tenant {
        let Some(own) = principal.tenant_id.as_deref().map(str::to_owned) else {
            return Err(Box::new(
                Problem::new(http::StatusCode::FORBIDDEN)
                    .with_type(watchpost_core::problem::type_uri("forbidden"))
                    .with_detail("this key belongs to no tenant, so it can read no audit events"),
            ));
        };
        if q.tenant_id.as_ref().is_some_and(|t| *t != own) {
            return Err(Box::new(
                Problem::new(http::StatusCode::FORBIDDEN)
                    .with_type(watchpost_core::problem::type_uri("forbidden"))
                    .with_detail("a tenant key can read only its own tenant's audit events"),
            ));
        }
        q.tenant_id = Some(own);
    }
    Ok(q)
}

/// Lists events, newest first, with filters and an opaque cursor.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/audit/events", tag = "audit",
    params(
        ("from" = Option<String>, Query, description = "recorded at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "recorded before (RFC 3339)"),
        ("apiKeyId" = Option<String>, Query, description = "actor key id"),
        ("tenantId" = Option<String>, Query, description = "tenant (forced to the caller's for tenant keys)"),
        ("action" = Option<String>, Query, description = "action word"),
        ("resourceType" = Option<String>, Query, description = "resource kind"),
        ("resourceId" = Option<String>, Query, description = "resource id"),
        ("outcome" = Option<String>, Query, description = "success, failure or pending"),
        ("correlationId" = Option<String>, Query, description = "correlation id"),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
        ("limit" = Option<usize>, Query, description = "1 to 1000, default 100"),
    ),
    responses(
        (status = 200, description = "a page of events", body = EventPage),
        (status = 400, description = "unknown filter or bad value", content_type = "application/problem+json"),
        (status = 401, description = "no valid API key", content_type = "application/problem+json"),
    )
))]
async fn list_events(State(s): State<ApiState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let q = match authorized_query(&parts) {
        Ok(q) => q,
        Err(response) => return response,
    };
    match s.auditor.store().query(&q).await {
        Ok(page) => axum::Json(EventPage {
            items: page.items,
            next_cursor: page.next.map(|c| c.encode()),
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit query failed");
            problem(error_problem(&e), &parts.extensions, &path)
        }
    }
}

/// One event by id (404 for another tenant's event).
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/audit/events/{id}", tag = "audit",
    params(("id" = String, Path, description = "event id (UUID)")),
    responses(
        (status = 200, description = "the event", body = Object),
        (status = 400, description = "not a UUID", content_type = "application/problem+json"),
        (status = 404, description = "no such event for this caller", content_type = "application/problem+json"),
    )
))]
async fn get_event(State(s): State<ApiState>, Path(id): Path<String>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let principal = match authorize(&parts.extensions, Access::AnyKey) {
        Ok(p) => p,
        Err(p) => return problem(p, &parts.extensions, &path),
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return problem(
            Problem::bad_request(format!("{id:?} is not an event id (a UUID)")),
            &parts.extensions,
            &path,
        );
    };
    match s.auditor.store().get(id).await {
        Ok(Some(e))
            if principal.role == Role::Root
                || (principal.tenant_id.is_some()
                    && e.actor.tenant_id.as_deref() == principal.tenant_id.as_deref()) =>
        {
            axum::Json(e).into_response()
        }
        Ok(_) => problem(
            Problem::not_found(format!("no audit event {id}")),
            &parts.extensions,
            &path,
        ),
        Err(e) => {
            tracing::error!(error = %e, "audit read failed");
            problem(error_problem(&e), &parts.extensions, &path)
        }
    }
}

/// Streams events as NDJSON (newest first), page by page, in constant memory.
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/audit/export", tag = "audit",
    params(
        ("from" = Option<String>, Query, description = "recorded at or after (RFC 3339)"),
        ("to" = Option<String>, Query, description = "recorded before (RFC 3339)"),
    ),
    responses(
        (status = 200, description = "one JSON event per line", content_type = "application/x-ndjson"),
        (status = 400, description = "unknown filter or bad value", content_type = "application/problem+json"),
    )
))]
async fn export_events(State(s): State<ApiState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let mut q = match authorized_query(&parts) {
        Ok(q) => q,
        Err(response) => return response,
    };
    q.limit = MAX_PAGE;
    let store = s.auditor.store().clone();
    let pages = stream::unfold(Some(q), move |state| {
        let store = store.clone();
        async move {
            let q = state?;
            match store.query(&q).await {
                Ok(page) => {
                    let mut buf = Vec::with_capacity(page.items.len() * 512);
                    for e in &page.items {
                        if serde_json::to_writer(&mut buf, e).is_ok() {
                            buf.push(b'\n');
                        }
                    }
                    let next = page.next.map(|c| EventQuery {
                        cursor: Some(c),
                        ..q
                    });
                    Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit export failed mid-stream");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(pages))
        .unwrap_or_else(|_| Problem::internal().to_http_response().into_response())
}

/// Verifies every stream's chain and checkpoints (root only).
#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/audit/verify", tag = "audit",
    responses(
        (status = 200, description = "the verification report (check `ok`)", body = Object),
        (status = 403, description = "not root", content_type = "application/problem+json"),
    )
))]
async fn verify_trail(State(s): State<ApiState>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let path = parts.uri.path().to_owned();
    if let Err(p) = authorize(&parts.extensions, Access::Root) {
        return problem(p, &parts.extensions, &path);
    }
    match verify(s.auditor.store().as_ref(), &s.verify).await {
        Ok(report) => axum::Json(report).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit verification failed to run");
            problem(error_problem(&e), &parts.extensions, &path)
        }
    }
}

/// The OpenAPI document of [`router`].
#[cfg(feature = "openapi")]
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    #[derive(OpenApi)]
    #[openapi(
        paths(post_event, list_events, get_event, export_events, verify_trail),
        components(schemas(PostedEvent, Recorded, EventPage)),
        tags((name = "audit", description = "tamper-evident audit trail"))
    )]
    struct Doc;
    Doc::openapi()
}
