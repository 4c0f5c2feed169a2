//! `/openapi.json` is a structurally valid OpenAPI 3.1 document, and walking it against the router
//! shows that every documented operation is served and every undocumented method is refused.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::{app_state, call, memory_config};

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch"];

fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn check_refs(doc: &Value, node: &Value, errors: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref")
                && resolve(doc, r).is_none()
            {
                errors.push(format!("dangling $ref {r}"));
            }
            map.values().for_each(|v| check_refs(doc, v, errors));
        }
        Value::Array(items) => items.iter().for_each(|v| check_refs(doc, v, errors)),
        _ => {}
    }
}

#[tokio::test]
async fn document_is_valid_openapi_3_1() {
    let state = app_state(memory_config()).await;
    let (status, headers, doc) = call(&state, crate::support::get("/openapi.json", &[])).await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Watchpost");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let mut errors = Vec::new();
    check_refs(&doc, &doc, &mut errors);
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !path.starts_with('/') {
            errors.push(format!("path {path} does not start with /"));
        }
        let placeholders: BTreeSet<String> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        for (method, op) in item.as_object().unwrap() {
            if !METHODS.contains(&method.as_str()) {
                continue;
            }
            let responses = op["responses"].as_object();
            if responses.is_none_or(|r| r.is_empty()) {
                errors.push(format!("{method} {path} documents no response"));
            }
            for code in responses.into_iter().flat_map(|r| r.keys()) {
                if code != "default" && !(code.len() == 3 && code.parse::<u16>().is_ok()) {
                    errors.push(format!("{method} {path}: response key {code}"));
                }
            }
            let declared: BTreeSet<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            if declared != placeholders {
                errors.push(format!(
                    "{method} {path}: path parameters {declared:?} != {placeholders:?}"
                ));
            }
            if let Some(id) = op["operationId"].as_str()
                && !operation_ids.insert(id.to_owned())
            {
                errors.push(format!("duplicate operationId {id}"));
            }
            for scheme in op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s.as_object().unwrap().keys())
            {
                if doc["components"]["securitySchemes"][scheme].is_null() {
                    errors.push(format!("{method} {path}: unknown security scheme {scheme}"));
                }
            }
        }
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test]
async fn every_documented_route_is_served_and_nothing_else_on_those_paths() {
    let state = app_state(memory_config()).await;
    let (_, _, doc) = call(&state, crate::support::get("/openapi.json", &[])).await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.len() >= 6,
        "expected the server's routes, got {:?}",
        paths.keys()
    );
    for (path, item) in paths {
        let concrete: String = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('{') {
                    "000000000000"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in METHODS {
            let request = http::Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{}"))
                .unwrap();
            let (status, _, body) = call(&state, request).await;
            let documented = item.get(*method).is_some();
            if documented {
                assert_ne!(
                    body["type"], "urn:watchpost:problem:route-not-found",
                    "{method} {path} is documented but not routed"
                );
                assert_ne!(
                    status, 405,
                    "{method} {path} is documented but its method is not served"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is served but not documented");
            }
        }
    }
}

#[tokio::test]
async fn docs_pages_are_served_offline() {
    let state = app_state(memory_config()).await;
    let (s, _, page) = call(&state, crate::support::get("/docs/", &[])).await;
    assert_eq!(s, 200);
    let page = page.as_str().unwrap().to_owned();
    assert!(
        !page.contains("https://"),
        "Swagger UI must not load assets from the network"
    );
    let (s, _, redoc) = call(&state, crate::support::get("/docs/redoc", &[])).await;
    assert_eq!(s, 200);
    let redoc = redoc.as_str().unwrap().to_owned();
    assert!(redoc.contains("redoc/redoc.standalone.js") && !redoc.contains("https://"));
    let (s, h, _) = call(
        &state,
        crate::support::get("/docs/redoc/redoc.standalone.js", &[]),
    )
    .await;
    assert_eq!(s, 200);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let (s, _, _) = call(
        &state,
        crate::support::get("/docs/swagger-ui-bundle.js", &[]),
    )
    .await;
    assert_eq!(s, 200, "the Swagger UI bundle is vendored");
}
