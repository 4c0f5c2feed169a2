//! [`Problem`]: the RFC 9457 `application/problem+json` body every Watchpost error uses.
//!
//! A problem has a `type` URI (`urn:watchpost:problem:<slug>`, or `about:blank` for
//! plain HTTP errors), a `title`, the HTTP `status`, a `detail` for people, the
//! `instance` (the request path), the `requestId`, and extension members. It never
//! carries a stack trace or a secret.
//!
//! [`Problem::to_http_response`] renders it and also stores the problem in the
//! response extensions, so an outer layer that learns the request id later (the
//! correlation layer) can re-render the body with it ([`Problem::fill_from`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::context::RequestContext;

/// The media type of a problem body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The `type` URI for a Watchpost problem slug: `urn:watchpost:problem:<slug>`.
pub fn type_uri(slug: &str) -> String {
    format!("urn:watchpost:problem:{slug}")
}

/// An RFC 9457 problem details value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened this time, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request path this problem occurred on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request id, so a report can be matched with logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Extension members, rendered at the top level.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

impl Problem {
    /// A problem of type `about:blank` whose title is the status's reason phrase.
    pub fn new(status: http::StatusCode) -> Self {
        Self {
            type_: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            request_id: None,
            extensions: BTreeMap::new(),
        }
    }

    /// 400: the request could not be understood.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(http::StatusCode::BAD_REQUEST)
            .with_type(type_uri("bad-request"))
            .with_detail(detail)
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(http::StatusCode::NOT_FOUND)
            .with_type(type_uri("not-found"))
            .with_detail(detail)
    }

    /// 404 for a path no route matches.
    pub fn route_not_found(path: &str) -> Self {
        Self::new(http::StatusCode::NOT_FOUND)
            .with_type(type_uri("route-not-found"))
            .with_detail("no endpoint is served at this path; see /openapi.json")
            .with_instance(path)
    }

    /// 405 for a path served under other methods.
    pub fn method_not_allowed() -> Self {
        Self::new(http::StatusCode::METHOD_NOT_ALLOWED)
            .with_type(type_uri("method-not-allowed"))
            .with_detail("this endpoint does not accept this method; see the Allow header")
    }

    /// 413: the body is over `limit_bytes`.
    pub fn payload_too_large(limit_bytes: u64) -> Self {
        Self::new(http::StatusCode::PAYLOAD_TOO_LARGE)
            .with_type(type_uri("payload-too-large"))
            .with_detail(format!(
                "the request body is larger than the limit of {limit_bytes} bytes"
            ))
            .with_extension("limitBytes", limit_bytes)
    }

    /// 503: a dependency needed to answer is unavailable; the client may retry.
    pub fn service_unavailable(detail: impl Into<String>) -> Self {
        Self::new(http::StatusCode::SERVICE_UNAVAILABLE)
            .with_type(type_uri("service-unavailable"))
            .with_detail(detail)
    }

    /// 500 with a detail that reveals nothing internal.
    pub fn internal() -> Self {
        Self::new(http::StatusCode::INTERNAL_SERVER_ERROR)
            .with_type(type_uri("internal"))
            .with_detail(
                "the server failed to answer this request; quote the requestId when reporting it",
            )
    }

    /// Sets the `type` URI.
    #[must_use]
    pub fn with_type(mut self, type_: impl Into<String>) -> Self {
        self.type_ = type_.into();
        self
    }

    /// Sets the `title`.
    #[must_use]
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// Sets the `detail`.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Sets the `instance`.
    #[must_use]
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Sets the `requestId`.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Adds an extension member (a reserved name such as `status` is ignored).
    #[must_use]
    pub fn with_extension(mut self, name: &str, value: impl Serialize) -> Self {
        if !matches!(
            name,
            "type" | "title" | "status" | "detail" | "instance" | "requestId"
        ) && let Ok(value) = serde_json::to_value(value)
        {
            self.extensions.insert(name.to_owned(), value);
        }
        self
    }

    /// Fills `requestId` from the [`RequestContext`] in `extensions`, when there is one and it is not set yet.
    #[must_use]
    pub fn fill_from(mut self, extensions: &http::Extensions) -> Self {
        if self.request_id.is_none()
            && let Some(ctx) = extensions.get::<RequestContext>()
        {
            self.request_id = Some(ctx.request_id.to_string());
        }
        self
    }

    /// The status as an [`http::StatusCode`].
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::from_u16(self.status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// `application/problem+json`.
    pub fn content_type(&self) -> &'static str {
        CONTENT_TYPE
    }

    /// An extension member by name.
    pub fn extension(&self, name: &str) -> Option<&serde_json::Value> {
        self.extensions.get(name)
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings, numbers and JSON values cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                r#"{{"type":"about:blank","title":"Error","status":{}}}"#,
                self.status
            )
        })
    }

    /// The HTTP response: status, `Content-Type: application/problem+json`, `Cache-Control: no-store`,
    /// the JSON body, and this problem in the response extensions.
    pub fn to_http_response(&self) -> http::Response<String> {
        let mut response = http::Response::new(self.to_json());
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(CONTENT_TYPE),
        );
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.title)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rfc9457_members() {
        let p = Problem::payload_too_large(1024)
            .with_instance("/audit/events")
            .with_request_id("r1");
        let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(v["type"], "urn:watchpost:problem:payload-too-large");
        assert_eq!(v["title"], "Payload Too Large");
        assert_eq!(v["status"], 413);
        assert_eq!(v["instance"], "/audit/events");
        assert_eq!(v["requestId"], "r1");
        assert_eq!(v["limitBytes"], 1024);
        let r = p.to_http_response();
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers()["content-type"], CONTENT_TYPE);
        assert!(r.extensions().get::<Problem>().is_some());
    }

    #[test]
    fn reserved_extension_names_are_ignored() {
        let p = Problem::internal().with_extension("status", 200);
        assert_eq!(p.status, 500);
        assert!(p.extension("status").is_none());
    }

    #[test]
    fn fills_request_id_from_context() {
        let mut ext = http::Extensions::new();
        let ctx = RequestContext::new();
        let id = ctx.request_id.to_string();
        ext.insert(ctx);
        assert_eq!(Problem::internal().fill_from(&ext).request_id, Some(id));
    }
}
