//! HTTP endpoints for API keys: `GET /auth/whoami` (any key), and for root `GET /auth/keys`,
//! `POST /auth/keys` (the secret is in the response once) and `DELETE /auth/keys/{id}`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use watchpost_core::{Access, Problem, Role, authorize};

use crate::app::AppState;
use crate::keys::{self, RevokeOutcome};

/// The caller as the server sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    /// API key id (`root` for the configured root key).
    pub key_id: String,
    /// Key name.
    pub key_name: String,
    /// Tenant, if any.
    pub tenant_id: Option<String>,
    /// `root` or `tenant`.
    pub role: String,
}

/// A stored key, without its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// Lookup id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Tenant, if any.
    pub tenant_id: Option<String>,
    /// `root` or `tenant`.
    pub role: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Revocation time (RFC 3339), if revoked.
    pub revoked_at: Option<String>,
}

impl From<&keys::ApiKeyRecord> for KeyView {
    fn from(r: &keys::ApiKeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            name: r.name.clone(),
            tenant_id: r.tenant_id.clone(),
            role: r.role.as_str().to_owned(),
            created_at: r.created_at.to_rfc3339(),
            revoked_at: r.revoked_at.map(|t| t.to_rfc3339()),
        }
    }
}

/// A request to create a key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    /// Name, 1 to 100 characters.
    pub name: String,
    /// Tenant id (1 to 128 characters from `[A-Za-z0-9._:-]`); required for tenant keys.
    pub tenant_id: Option<String>,
    /// `tenant` (default) or `root`.
    pub role: Option<String>,
}

/// A created key: the only time its secret is shown.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKey {
    /// The full key to hand to the client; not retrievable later.
    pub key: String,
    /// The stored record.
    #[serde(flatten)]
    pub record: KeyView,
}

fn problem(p: Problem, parts: &Parts) -> Response {
    p.fill_from(&parts.extensions)
        .with_instance(parts.uri.path())
        .to_http_response()
        .into_response()
}

fn store_failure(e: &keys::KeyStoreError, parts: &Parts) -> Response {
    tracing::error!(error = %e, "API key store failed");
    problem(
        Problem::service_unavailable("the key store is unavailable; retry shortly"),
        parts,
    )
}

/// Validates a create request into (name, tenant, role).
pub fn validate_create(body: CreateKey) -> Result<(String, Option<String>, Role), Problem> {
    let name = body.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "`name` must be 1 to 100 printable characters",
        ));
    }
    let role = match body.role.as_deref() {
        None => Role::Tenant,
        Some(r) => r
            .parse::<Role>()
            .map_err(|e| Problem::bad_request(e.to_string()))?,
    };
    let tenant = body.tenant_id.map(|t| t.trim().to_owned());
    if let Some(t) = &tenant
        && !watchpost_core::id::is_valid_id(t)
    {
        return Err(Problem::bad_request(
            "`tenantId` must be 1 to 128 characters from [A-Za-z0-9._:-]",
        ));
    }
    if role == Role::Tenant && tenant.is_none() {
        return Err(Problem::bad_request("tenant keys need a `tenantId`"));
    }
    Ok((name, tenant, role))
}

/// The caller's identity.
#[utoipa::path(get, path = "/auth/whoami", tag = "auth",
    security(("api_key" = []), ("api_key_header" = [])),
    responses((status = 200, body = WhoAmI), (status = 401, body = crate::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn whoami(parts: Parts) -> Response {
    match authorize(&parts.extensions, Access::AnyKey) {
        Ok(p) => Json(WhoAmI {
            key_id: p.key_id.to_string(),
            key_name: p.key_name.to_string(),
            tenant_id: p.tenant_id.as_deref().map(str::to_owned),
            role: p.role.as_str().to_owned(),
        })
        .into_response(),
        Err(e) => problem(e, &parts),
    }
}

/// Every API key (root only); secrets are never shown.
#[utoipa::path(get, path = "/auth/keys", tag = "auth",
    security(("api_key" = []), ("api_key_header" = [])),
    responses((status = 200, body = [KeyView]),
        (status = 401, body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, body = crate::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn list_keys(State(state): State<AppState>, parts: Parts) -> Response {
    if let Err(e) = authorize(&parts.extensions, Access::Root) {
        return problem(e, &parts);
    }
    match state.keys.list().await {
        Ok(all) => Json(all.iter().map(KeyView::from).collect::<Vec<_>>()).into_response(),
        Err(e) => store_failure(&e, &parts),
    }
}

/// Creates a key (root only); the response holds the secret, once.
#[utoipa::path(post, path = "/auth/keys", tag = "auth", request_body = CreateKey,
    security(("api_key" = []), ("api_key_header" = [])),
    responses((status = 201, body = CreatedKey),
        (status = 400, body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, body = crate::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn create_key(
    State(state): State<AppState>,
    parts: Parts,
    body: axum::body::Bytes,
) -> Response {
    if let Err(e) = authorize(&parts.extensions, Access::Root) {
        return problem(e, &parts);
    }
    let body: CreateKey = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return problem(
                Problem::bad_request(format!("invalid JSON body: {e}")),
                &parts,
            );
        }
    };
    let (name, tenant, role) = match validate_create(body) {
        Ok(v) => v,
        Err(e) => return problem(e, &parts),
    };
    let new = keys::generate(&name, tenant, role, state.clock.now());
    if let Err(e) = state.keys.insert(new.record.clone()).await {
        return store_failure(&e, &parts);
    }
    tracing::info!(key_id = %new.record.id, role = role.as_str(), "API key created");
    (
        StatusCode::CREATED,
        Json(CreatedKey {
            key: new.key,
            record: KeyView::from(&new.record),
        }),
    )
        .into_response()
}

/// Revokes a key (root only); revoking twice is not an error.
#[utoipa::path(delete, path = "/auth/keys/{id}", tag = "auth",
    params(("id" = String, Path, description = "the key id")),
    security(("api_key" = []), ("api_key_header" = [])),
    responses((status = 204, description = "revoked"),
        (status = 401, body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, body = crate::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, body = crate::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Path(id): Path<String>,
    parts: Parts,
) -> Response {
    if let Err(e) = authorize(&parts.extensions, Access::Root) {
        return problem(e, &parts);
    }
    match state.keys.revoke(&id, state.clock.now()).await {
        Ok(RevokeOutcome::Revoked | RevokeOutcome::AlreadyRevoked) => {
            state.auth.forget(&id).await;
            tracing::info!(key_id = %id, "API key revoked");
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(RevokeOutcome::NotFound) => {
            problem(Problem::not_found("no API key has this id"), &parts)
        }
        Err(e) => store_failure(&e, &parts),
    }
}
