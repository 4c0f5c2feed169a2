//! The OpenAPI 3.1 document (generated from the handlers' annotations with utoipa), and the pages
//! that show it: Swagger UI at `/docs` and ReDoc at `/docs/redoc`, with every asset served by this
//! binary so the pages work offline.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, PathItem, path::HttpMethod};
use utoipa::{Modify, OpenApi as _};
use utoipa_swagger_ui::SwaggerUi;

/// The shape of every error body (RFC 9457), for the document.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProblemDoc {
    /// A URI naming the kind of problem (`urn:watchpost:problem:<slug>` or `about:blank`).
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What happened.
    pub detail: Option<String>,
    /// The request path.
    pub instance: Option<String>,
    /// The request id, to match logs.
    pub request_id: Option<String>,
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // One name per credential, shared by every crate's annotations.
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A Watchpost API key, as `Authorization: Bearer <key>` or `X-API-Key: <key>`."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        components.add_security_scheme(
            "alertmanager_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "WATCHPOST_ALERTMANAGER_TOKEN, sent by Alertmanager's http_config.",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Watchpost",
        description = "Production operations server: health, metrics, audit trail, incidents and status page.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0")
    ),
    paths(
        crate::keys_api::whoami,
        crate::keys_api::list_keys,
        crate::keys_api::create_key,
        crate::keys_api::revoke_key
    ),
    components(schemas(ProblemDoc)),
    modifiers(&SecuritySchemes),
    tags((name = "auth", description = "API keys"), (name = "docs", description = "This document and its viewers"))
)]
struct ServerApi;

fn page(summary: &str, content_type: &str) -> PathItem {
    use utoipa::openapi::path::OperationBuilder;
    use utoipa::openapi::{ContentBuilder, ResponseBuilder};
    let op = OperationBuilder::new()
        .summary(Some(summary))
        .tag("docs")
        .response(
            "200",
            ResponseBuilder::new()
                .description(summary)
                .content(content_type, ContentBuilder::new().build())
                .build(),
        )
        .build();
    PathItem::new(HttpMethod::Get, op)
}

/// The server's own part of the document; the feature crates' parts are merged in by [`crate::app`].
pub fn server_document() -> OpenApi {
    let mut doc = ServerApi::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.paths.paths.insert(
        "/openapi.json".to_owned(),
        page("This OpenAPI document", "application/json"),
    );
    doc.paths
        .paths
        .insert("/docs".to_owned(), page("Swagger UI", "text/html"));
    doc.paths
        .paths
        .insert("/docs/redoc".to_owned(), page("ReDoc", "text/html"));
    doc
}

const REDOC_JS: &[u8] = include_bytes!("../assets/redoc/redoc.standalone.js");

/// Relative URLs so the page also works when the server is mounted under a path prefix.
const REDOC_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Watchpost API (ReDoc)</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<div id="redoc"></div>
<script src="redoc/redoc.standalone.js"></script>
<script>Redoc.init("../openapi.json", { hideDownloadButton: false }, document.getElementById("redoc"));</script>
<noscript>ReDoc needs JavaScript; the raw document is at <a href="../openapi.json">/openapi.json</a>.</noscript>
</body>
</html>
"#;

/// `/openapi.json`, `/docs` (Swagger UI, vendored assets) and `/docs/redoc`.
pub fn routes<S: Clone + Send + Sync + 'static>(doc: OpenApi) -> Router<S> {
    Router::new()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
        .route("/docs/redoc", get(|| async { Html(REDOC_HTML) }))
        .route(
            "/docs/redoc/redoc.standalone.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "public, max-age=86400"),
                    ],
                    REDOC_JS,
                )
                    .into_response()
            }),
        )
}
