//! The OpenAPI document lists exactly the routes `router()` serves.

use watchpost_core::{Principal, Role};

use crate::support::{get_req, layer, send};

#[tokio::test]
async fn every_documented_path_is_served_and_vice_versa() {
    let doc = watchpost_correlation::openapi();
    let paths: Vec<String> = doc.paths.paths.keys().cloned().collect();
    assert_eq!(paths, vec!["/errors".to_owned()]);
    let router = layer().router();
    for path in &paths {
        let mut req = get_req(path, &[]);
        req.extensions_mut()
            .insert(Principal::new("root", "root", None, Role::Root));
        let (r, _) = send(&router, req).await;
        assert_eq!(r.status(), 200, "{path} is documented but not served");
    }
    let (r, _) = send(&router, get_req("/undocumented", &[])).await;
    assert_eq!(r.status(), 404);
}
