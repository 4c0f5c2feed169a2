//! The OpenAPI document lists exactly the paths the router serves.

use std::collections::BTreeSet;

use watchpost_health::{
    Check, CheckOutcome, HealthConfig, HealthRegistry, PATHS, check_fn, openapi, router,
};

use crate::get;

#[tokio::test]
async fn openapi_and_router_agree() {
    let documented: BTreeSet<String> = openapi().paths.paths.keys().cloned().collect();
    let served: BTreeSet<String> = PATHS.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(documented, served);

    let r = HealthRegistry::new(HealthConfig::default());
    r.register(Check::new(
        "db",
        check_fn(|| async { CheckOutcome::pass() }),
    ))
    .unwrap();
    r.mark_started();
    let app = router(r);
    for path in &documented {
        let uri = path.replace("{check}", "db");
        let a = get(&app, &uri, None).await;
        assert_eq!(a.status, 200, "{uri} is served");
    }
}
