//! The auth matrix: no key, malformed, unknown, revoked, tenant on a root endpoint, root; exact
//! status and problem body for each, on real endpoints, plus the body limit and unknown routes.

use serde_json::json;
use watchpost_core::Role;
use watchpost_server::keys::generate;

use crate::support::{ROOT_KEY, app_state, call, get, memory_config, post_json};

/// The request id every case sends, echoed in every problem body.
const REQUEST_ID: &str = "auth-matrix-1";

fn problem(status: u16, reason: Option<&str>, detail: &str, instance: &str) -> serde_json::Value {
    let mut v = json!({
        "requestId": REQUEST_ID,
        "type": if status == 401 { "urn:watchpost:problem:unauthorized" } else { "urn:watchpost:problem:forbidden" },
        "title": if status == 401 { "Unauthorized" } else { "Forbidden" },
        "status": status,
        "detail": detail,
        "instance": instance,
    });
    if let Some(r) = reason {
        v["reason"] = json!(r);
    }
    v
}

/// Request headers, expected status, expected problem body (`None`: success).
type Case = (Vec<(&'static str, String)>, u16, Option<serde_json::Value>);

#[tokio::test]
async fn every_credential_gets_the_exact_answer() {
    let state = app_state(memory_config()).await;
    let tenant = generate("ci", Some("acme".into()), Role::Tenant, chrono::Utc::now());
    let revoked = generate("old", Some("acme".into()), Role::Tenant, chrono::Utc::now());
    state.keys.insert(tenant.record.clone()).await.unwrap();
    state.keys.insert(revoked.record.clone()).await.unwrap();
    state
        .keys
        .revoke(&revoked.record.id, chrono::Utc::now())
        .await
        .unwrap();
    let unknown = generate("never-stored", None, Role::Tenant, chrono::Utc::now());

    let bearer = |k: &str| format!("Bearer {k}");
    let cases: Vec<Case> = vec![
        (
            vec![],
            401,
            Some(problem(
                401,
                Some("missing"),
                "this endpoint needs an API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                "/auth/keys",
            )),
        ),
        (
            vec![("authorization", "Basic dXNlcjpwdw==".to_owned())],
            401,
            Some(problem(
                401,
                Some("malformed"),
                "the credential sent is not a well-formed API key",
                "/auth/keys",
            )),
        ),
        (
            vec![("authorization", bearer(&unknown.key))],
            401,
            Some(problem(
                401,
                Some("unknown"),
                "the API key sent is not recognised",
                "/auth/keys",
            )),
        ),
        (
            vec![("x-api-key", revoked.key.clone())],
            401,
            Some(problem(
                401,
                Some("revoked"),
                "the API key sent has been revoked",
                "/auth/keys",
            )),
        ),
        (
            vec![("authorization", bearer(&tenant.key))],
            403,
            Some(problem(
                403,
                None,
                "this endpoint needs a key with the root role",
                "/auth/keys",
            )),
        ),
        (vec![("authorization", bearer(ROOT_KEY))], 200, None),
        (vec![("x-api-key", ROOT_KEY.to_owned())], 200, None),
    ];
    for (headers, status, body) in cases {
        let mut hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        hs.push(("x-request-id", REQUEST_ID));
        let (got_status, got_headers, got_body) = call(&state, get("/auth/keys", &hs)).await;
        assert_eq!(got_status.as_u16(), status, "{headers:?}: {got_body}");
        match body {
            Some(expected) => {
                assert_eq!(got_headers["content-type"], "application/problem+json");
                assert_eq!(got_body, expected, "{headers:?}");
            }
            None => {
                let ids: Vec<&str> = got_body
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k["id"].as_str().unwrap())
                    .collect();
                assert_eq!(ids.len(), 2);
                assert!(
                    got_body.to_string().find("secret").is_none()
                        && !got_body.to_string().contains(&tenant.key)
                );
            }
        }
    }

    // The same tenant key is fine where any key is enough.
    let (s, _, who) = call(
        &state,
        get("/auth/whoami", &[("authorization", &bearer(&tenant.key))]),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        who,
        json!({"keyId": tenant.record.id, "keyName": "ci", "tenantId": "acme", "role": "tenant"})
    );

    // Two root requests, the tenant key refused by role (authenticated, then forbidden), and whoami.
    let counts = state.auth.counters().snapshot();
    assert_eq!(
        counts,
        [
            ("success", 4),
            ("malformed", 1),
            ("unknown", 1),
            ("revoked", 1),
            ("error", 0)
        ]
    );
}

#[tokio::test]
async fn without_any_root_key_root_endpoints_refuse_everyone() {
    let mut config = memory_config();
    config.root_api_key = None;
    let state = app_state(config).await;
    let (s, _, body) = call(
        &state,
        get(
            "/auth/keys",
            &[("authorization", &format!("Bearer {ROOT_KEY}"))],
        ),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(body["reason"], "malformed");
    let (s, _, _) = call(&state, get("/auth/keys", &[])).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn keys_are_managed_over_http_and_revocation_bites() {
    let state = app_state(memory_config()).await;
    let root = [("authorization", format!("Bearer {ROOT_KEY}"))];
    let root: Vec<(&str, &str)> = root.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (s, _, created) = call(
        &state,
        post_json(
            "/auth/keys",
            &root,
            r#"{"name":"deploy bot","tenantId":"acme"}"#,
        ),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let (s, _, _) = call(&state, get("/auth/whoami", &[("x-api-key", &key)])).await;
    assert_eq!(s, 200);
    let (s, _, _) = call(
        &state,
        http::Request::delete(format!("/auth/keys/{id}"))
            .header("authorization", format!("Bearer {ROOT_KEY}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _, body) = call(&state, get("/auth/whoami", &[("x-api-key", &key)])).await;
    assert_eq!(
        (s.as_u16(), body["reason"].as_str()),
        (401, Some("revoked"))
    );
    let (s, _, body) = call(
        &state,
        http::Request::delete("/auth/keys/000000000000")
            .header("authorization", format!("Bearer {ROOT_KEY}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), body["type"].as_str()),
        (404, Some("urn:watchpost:problem:not-found"))
    );

    for (body, fragment) in [
        ("{nope", "invalid JSON body"),
        (r#"{"name":""}"#, "`name`"),
        (r#"{"name":"x"}"#, "tenantId"),
        (r#"{"name":"x","tenantId":"a b"}"#, "tenantId"),
        (
            r#"{"name":"x","role":"admin","tenantId":"t"}"#,
            "unknown role",
        ),
        (r#"{"name":"x","tenantId":"t","extra":1}"#, "unknown field"),
    ] {
        let (s, h, p) = call(&state, post_json("/auth/keys", &root, body)).await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(h["content-type"], "application/problem+json");
        assert!(
            p["detail"].as_str().unwrap().contains(fragment),
            "{body}: {p}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_unknown_routes_and_methods_are_problems() {
    let state = app_state(memory_config()).await;
    let big = "x".repeat(1024 * 1024 + 1);
    let (s, h, p) = call(
        &state,
        post_json(
            "/auth/keys",
            &[("authorization", &format!("Bearer {ROOT_KEY}"))],
            &big,
        ),
    )
    .await;
    assert_eq!(s, 413);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(p["type"], "urn:watchpost:problem:payload-too-large");
    assert_eq!(p["limitBytes"], 1_048_576);

    let (s, h, p) = call(&state, get("/definitely/not/here", &[])).await;
    assert_eq!(s, 404);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(p["type"], "urn:watchpost:problem:route-not-found");
    assert_eq!(p["instance"], "/definitely/not/here");

    let (s, h, p) = call(
        &state,
        http::Request::put("/auth/keys")
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, 405);
    assert_eq!(h["content-type"], "application/problem+json");
    assert_eq!(p["type"], "urn:watchpost:problem:method-not-allowed");
    assert!(h.get("allow").is_some());
}
