//! The OpenAPI document lists exactly the routes the router serves.

use super::{get_req, metrics, send};

#[tokio::test]
async fn every_documented_path_is_served_and_vice_versa() {
    let doc = watchpost_metrics::openapi();
    let mut documented: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
    documented.sort_unstable();
    assert_eq!(documented, vec!["/metrics", "/metrics/summary"]);
    let m = metrics();
    let router = m.router();
    for path in &documented {
        let response = send(&router, get_req(path)).await;
        assert_ne!(
            response.status(),
            404,
            "{path} is documented but not served"
        );
    }
    // Nothing else under the router answers.
    let response = send(&router, get_req("/metrics/other")).await;
    assert_eq!(response.status(), 404);
}
