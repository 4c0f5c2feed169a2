//! The HTTP surface: `POST /webhooks/alertmanager`, the incident API and the status page, as one [`router`].

// `Problem` is core's error body; it is built at most once per failed request and returned
// straight to the client, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use watchpost_core::{Access, Problem, RequestContext, authorize, problem::type_uri};

use crate::alertmanager::WebhookPayload;
use crate::engine::{IncidentOp, NewIncident, OpError};
use crate::error::IncidentError;
use crate::metrics::WebhookOutcome;
use crate::model::{Actor, IncidentStatus, UpdateStatus};
use crate::outbox::Origin;
use crate::service::{IncidentMutation, IncidentService};
use crate::store::{Cursor, IncidentQuery};

/// The routes, to mount under any prefix:
///
/// | method and path | who |
/// | --- | --- |
/// | `POST /webhooks/alertmanager` | the Alertmanager token (Bearer) or basic credentials |
/// | `GET /incidents`, `GET /incidents/{id}` | any API key |
/// | `POST /incidents`, `/incidents/{id}/acknowledge`, `/resolve`, `/updates` | any API key |
/// | `GET /status`, `GET /status/summary.json` | anyone |
pub fn router(service: IncidentService) -> axum::Router {
    axum::Router::new()
        .route("/webhooks/alertmanager", post(webhook))
        .route("/incidents", get(list_incidents).post(create_incident))
        .route("/incidents/{id}", get(get_incident))
        .route("/incidents/{id}/acknowledge", post(acknowledge))
        .route("/incidents/{id}/resolve", post(resolve))
        .route("/incidents/{id}/updates", post(post_update))
        .route("/status", get(crate::status::status_html))
        .route("/status/summary.json", get(crate::status::summary_json))
        .with_state(service)
}

pub(crate) fn problem_response(problem: Problem, extensions: &http::Extensions) -> Response {
    problem
        .fill_from(extensions)
        .to_http_response()
        .into_response()
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Constant-time comparison; hashing first hides the expected length too.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    bool::from(digest(presented).ct_eq(&digest(expected)))
}

fn webhook_authorized(service: &IncidentService, headers: &HeaderMap) -> Result<(), Problem> {
    let config = service.config();
    let unauthorized = |detail: &str| {
        Problem::new(StatusCode::UNAUTHORIZED)
            .with_type(type_uri("unauthorized"))
            .with_detail(detail)
    };
    if config.alertmanager_token.is_none() && config.alertmanager_basic_auth.is_none() {
        return Err(unauthorized(
            "the Alertmanager webhook is disabled: no token is configured (set WATCHPOST_ALERTMANAGER_TOKEN)",
        ));
    }
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(unauthorized(
            "send `Authorization: Bearer <token>` (http_config.authorization in Alertmanager)",
        ));
    };
    let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
    let credential = credential.trim();
    let ok = if scheme.eq_ignore_ascii_case("bearer") {
        config
            .alertmanager_token
            .as_ref()
            .is_some_and(|t| same_secret(credential.as_bytes(), t.as_bytes()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        use base64::Engine as _;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credential)
            .unwrap_or_default();
        config
            .alertmanager_basic_auth
            .as_ref()
            .is_some_and(|(u, p)| same_secret(&decoded, format!("{u}:{p}").as_bytes()))
    } else {
        false
    };
    if ok {
        Ok(())
    } else {
        Err(unauthorized("the webhook credential is not valid"))
    }
}

fn origin_of(extensions: &http::Extensions) -> Option<Origin> {
    extensions.get::<RequestContext>().map(Origin::from_context)
}

#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/webhooks/alertmanager", tag = "incidents",
    request_body = WebhookPayload,
    responses(
        (status = 200, description = "applied and durable (or a duplicate)"),
        (status = 400, description = "not a version 4 payload", content_type = "application/problem+json"),
        (status = 401, description = "missing or wrong token", content_type = "application/problem+json"),
        (status = 413, description = "body over 1 MiB", content_type = "application/problem+json"),
        (status = 503, description = "store unavailable; Alertmanager retries", content_type = "application/problem+json"),
    ),
    security(("alertmanager_token" = []))
))]
async fn webhook(State(service): State<IncidentService>, request: Request<Body>) -> Response {
    let (parts, body) = request.into_parts();
    let metrics = service.metrics().clone();
    let fail = |outcome: WebhookOutcome, problem: Problem| {
        metrics.webhook(outcome);
        problem_response(problem, &parts.extensions)
    };
    if let Err(problem) = webhook_authorized(&service, &parts.headers) {
        return fail(WebhookOutcome::Unauthorized, problem);
    }
    let limit = service.config().max_body_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return fail(
            WebhookOutcome::TooLarge,
            Problem::payload_too_large(limit as u64),
        );
    }
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return fail(
                WebhookOutcome::TooLarge,
                Problem::payload_too_large(limit as u64),
            );
        }
        Err(e) => {
            return fail(
                WebhookOutcome::BadRequest,
                Problem::bad_request(format!("cannot read the body: {e}")),
            );
        }
    };
    let payload = match WebhookPayload::parse(&bytes) {
        Ok(p) => p,
        Err(e) => {
            return fail(
                WebhookOutcome::BadRequest,
                Problem::bad_request(e.to_string()),
            );
        }
    };
    let alerts = payload.alerts.len();
    match service.ingest(payload, origin_of(&parts.extensions)).await {
        Ok(changes) => {
            let outcome = if changes.is_noop() {
                WebhookOutcome::Duplicate
            } else {
                WebhookOutcome::Accepted
            };
            service.metrics().webhook(outcome);
            Json(serde_json::json!({
                "status": outcome.as_str(),
                "alerts": alerts,
                "newEvents": changes.events.len(),
                "incidentsChanged": changes.incidents.len(),
                "notificationsQueued": changes.outbox.len(),
            }))
            .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "webhook delivery not stored; answering 503 so Alertmanager retries");
            fail(
                WebhookOutcome::Unavailable,
                Problem::service_unavailable(
                    "the incident store is unavailable; the delivery was not stored, retry",
                ),
            )
        }
    }
}

/// Query parameters of `GET /incidents`.
#[derive(Debug, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// triggered, acknowledged or resolved.
    status: Option<String>,
    /// critical, warning or info.
    severity: Option<String>,
    /// Service label.
    service: Option<String>,
    /// Started at or after (RFC 3339).
    since: Option<String>,
    /// Started before (RFC 3339).
    until: Option<String>,
    /// From a previous page's `nextCursor`.
    cursor: Option<String>,
    /// 1 to 500, default 50.
    limit: Option<usize>,
}

fn parse_time(
    name: &str,
    v: &Option<String>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, Problem> {
    v.as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.to_utc())
                .map_err(|e| {
                    Problem::bad_request(format!("`{name}` must be an RFC 3339 time: {e}"))
                })
        })
        .transpose()
}

impl ListParams {
    fn query(&self) -> Result<IncidentQuery, Problem> {
        Ok(IncidentQuery {
            status: self
                .status
                .as_deref()
                .map(|s| {
                    IncidentStatus::parse(s).ok_or_else(|| {
                        Problem::bad_request("`status` must be triggered, acknowledged or resolved")
                    })
                })
                .transpose()?,
            severity: self
                .severity
                .as_deref()
                .map(|s| {
                    s.parse()
                        .map_err(|e: watchpost_core::severity::UnknownSeverity| {
                            Problem::bad_request(e.to_string())
                        })
                })
                .transpose()?,
            service: self.service.clone(),
            since: parse_time("since", &self.since)?,
            until: parse_time("until", &self.until)?,
            cursor: self
                .cursor
                .as_deref()
                .map(|c| {
                    Cursor::decode(c).ok_or_else(|| {
                        Problem::bad_request("`cursor` is not a cursor this server issued")
                    })
                })
                .transpose()?,
            limit: self.limit.unwrap_or(50).clamp(1, 500),
        })
    }
}

fn store_problem(e: &IncidentError) -> Problem {
    match e {
        IncidentError::NotFound(id) => Problem::not_found(format!("no incident with id {id}")),
        IncidentError::Conflict(OpError::Resolved) => Problem::new(StatusCode::CONFLICT)
            .with_type(type_uri("conflict"))
            .with_detail(e.to_string()),
        IncidentError::Unavailable(_) => {
            tracing::error!(error = %e, "incident store unavailable");
            Problem::service_unavailable("the incident store is unavailable; retry")
        }
        _ => {
            tracing::error!(error = %e, "incident request failed");
            Problem::internal()
        }
    }
}

#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/incidents", tag = "incidents", params(ListParams),
    responses((status = 200, description = "incidents, newest first, with `nextCursor`")),
    security(("api_key" = []))
))]
async fn list_incidents(
    State(service): State<IncidentService>,
    request: Request<Body>,
) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(p) = authorize(&parts.extensions, Access::AnyKey) {
        return problem_response(p, &parts.extensions);
    }
    let params: ListParams = match Query::try_from_uri(&parts.uri) {
        Ok(Query(p)) => p,
        Err(e) => return problem_response(Problem::bad_request(e.body_text()), &parts.extensions),
    };
    let query = match params.query() {
        Ok(q) => q,
        Err(p) => return problem_response(p, &parts.extensions),
    };
    match service.store().list(query).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => problem_response(store_problem(&e), &parts.extensions),
    }
}

#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/incidents/{id}", tag = "incidents",
    params(("id" = String, Path, description = "incident id")),
    responses((status = 200, body = crate::model::Incident), (status = 404, content_type = "application/problem+json")),
    security(("api_key" = []))
))]
async fn get_incident(
    State(service): State<IncidentService>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Response {
    let (parts, _) = request.into_parts();
    if let Err(p) = authorize(&parts.extensions, Access::AnyKey) {
        return problem_response(p, &parts.extensions);
    }
    match service.store().get(id.clone()).await {
        Ok(Some(i)) => Json(i).into_response(),
        Ok(None) => problem_response(
            store_problem(&IncidentError::NotFound(id)),
            &parts.extensions,
        ),
        Err(e) => problem_response(store_problem(&e), &parts.extensions),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, Problem> {
    let bytes = http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
        .map_err(|_| Problem::payload_too_large(64 * 1024))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

/// Runs an API mutation: authorization, the change, the response and the mutation hook.
async fn mutate<F, Fut>(
    service: &IncidentService,
    action: &'static str,
    id: Option<String>,
    request: Request<Body>,
    created: bool,
    f: F,
) -> Response
where
    F: FnOnce(Actor, Option<Origin>, Body) -> Fut,
    Fut: std::future::Future<Output = Result<crate::model::Incident, Problem>>,
{
    let (parts, body) = request.into_parts();
    let principal = match authorize(&parts.extensions, Access::AnyKey) {
        Ok(p) => p,
        Err(p) => return problem_response(p, &parts.extensions),
    };
    let result = f(Actor::key(&principal), origin_of(&parts.extensions), body).await;
    let (status, incident_id, response) = match result {
        Ok(incident) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (
                status,
                Some(incident.id.clone()),
                (status, Json(incident)).into_response(),
            )
        }
        Err(p) => (p.status(), id, problem_response(p, &parts.extensions)),
    };
    service.mutation(IncidentMutation {
        action,
        incident_id,
        principal: Some(principal),
        context: parts.extensions.get::<RequestContext>().cloned(),
        status: status.as_u16(),
    });
    response
}

#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/incidents", tag = "incidents", request_body = NewIncident,
    responses((status = 201, body = crate::model::Incident), (status = 400, content_type = "application/problem+json")),
    security(("api_key" = []))
))]
async fn create_incident(
    State(service): State<IncidentService>,
    request: Request<Body>,
) -> Response {
    let s = service.clone();
    mutate(
        &service,
        "incident.create",
        None,
        request,
        true,
        |actor, origin, body| async move {
            let new: NewIncident = read_json(body).await?;
            if new.title.trim().is_empty() {
                return Err(Problem::bad_request("`title` must not be empty"));
            }
            s.create(new, actor, origin)
                .await
                .map_err(|e| store_problem(&e))
        },
    )
    .await
}

async fn op(
    service: IncidentService,
    action: &'static str,
    id: String,
    request: Request<Body>,
    op: Option<IncidentOp>,
) -> Response {
    let s = service.clone();
    let target = id.clone();
    mutate(
        &service,
        action,
        Some(id),
        request,
        false,
        |actor, origin, body| async move {
            let op = match op {
                Some(op) => op,
                None => {
                    let update: UpdateBody = read_json(body).await?;
                    if update.note.trim().is_empty() {
                        return Err(Problem::bad_request("`note` must not be empty"));
                    }
                    IncidentOp::Update {
                        status: update.status,
                        note: update.note,
                    }
                }
            };
            s.apply(&target, op, actor, origin)
                .await
                .map_err(|e| store_problem(&e))
        },
    )
    .await
}

#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/incidents/{id}/acknowledge", tag = "incidents",
    params(("id" = String, Path, description = "incident id")),
    responses((status = 200, body = crate::model::Incident), (status = 404), (status = 409)),
    security(("api_key" = []))
))]
async fn acknowledge(
    State(service): State<IncidentService>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Response {
    op(
        service,
        "incident.acknowledge",
        id,
        request,
        Some(IncidentOp::Acknowledge),
    )
    .await
}

#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/incidents/{id}/resolve", tag = "incidents",
    params(("id" = String, Path, description = "incident id")),
    responses((status = 200, body = crate::model::Incident), (status = 404)),
    security(("api_key" = []))
))]
async fn resolve(
    State(service): State<IncidentService>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Response {
    op(
        service,
        "incident.resolve",
        id,
        request,
        Some(IncidentOp::Resolve),
    )
    .await
}

/// Body of `POST /incidents/{id}/updates`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    /// investigating, identified or monitoring.
    pub status: UpdateStatus,
    /// The text.
    pub note: String,
}

#[cfg_attr(feature = "openapi", utoipa::path(
    post, path = "/incidents/{id}/updates", tag = "incidents", request_body = UpdateBody,
    params(("id" = String, Path, description = "incident id")),
    responses((status = 200, body = crate::model::Incident), (status = 400), (status = 404)),
    security(("api_key" = []))
))]
async fn post_update(
    State(service): State<IncidentService>,
    Path(id): Path<String>,
    request: Request<Body>,
) -> Response {
    op(service, "incident.update", id, request, None).await
}

#[cfg(feature = "openapi")]
/// The OpenAPI document of every route [`router`] serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    #[derive(utoipa::OpenApi)]
    #[openapi(
        paths(webhook, list_incidents, get_incident, create_incident, acknowledge, resolve, post_update,
              crate::status::status_html, crate::status::summary_json),
        components(schemas(WebhookPayload, crate::model::Incident, NewIncident, UpdateBody)),
        tags((name = "incidents", description = "Alertmanager webhook, incidents and status page"))
    )]
    struct Doc;
    Doc::openapi()
}
