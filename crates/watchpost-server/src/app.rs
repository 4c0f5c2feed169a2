//! Assembly: the application state, the router with every endpoint, and the layers in the order
//! the design fixes (outermost first: correlation, metrics, auth, rate limit, audit, handler).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use tower::ServiceBuilder;
use tower_http::body::Limited;
use tower_http::limit::RequestBodyLimitLayer;
use watchpost_core::{Problem, SharedClock};

use crate::auth::{AuthLayer, Authenticator};
use crate::config::Config;
use crate::keys::ApiKeyStore;
use crate::rejections::ProblemBodiesLayer;
use crate::serve::StartupError;
use crate::store::Stores;
use crate::{keys_api, openapi};

/// What handlers share.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// The opened stores.
    pub stores: Stores,
    /// API keys.
    pub keys: Arc<dyn ApiKeyStore>,
    /// The authenticator (shared with the auth layer).
    pub auth: Arc<Authenticator>,
    /// Wall-clock time.
    pub clock: SharedClock,
    /// Health checks and the readiness lifecycle.
    pub health: watchpost_health::HealthRegistry,
    /// Metrics registry, HTTP layer and endpoints.
    pub metrics: watchpost_metrics::Metrics,
    /// Request ids, trace context, the request log line and error groups.
    pub correlation: watchpost_correlation::CorrelationLayer,
    /// The audit trail writer.
    pub auditor: watchpost_audit::Auditor,
    /// The rate limiter (local, or shared through Redis).
    pub ratelimit: watchpost_ratelimit::RateLimiter,
    /// Incidents, the Alertmanager webhook and the status page.
    pub incidents: watchpost_incident::IncidentService,
    /// The notification outbox worker, taken at shutdown.
    pub incident_worker:
        Arc<std::sync::Mutex<Option<watchpost_incident::worker::OutboxWorkerHandle>>>,
}

fn setup_error(what: &str, e: impl std::fmt::Display) -> StartupError {
    StartupError::Serve(format!("cannot set up {what}: {e}"))
}

impl AppState {
    /// State over opened `stores`, with the default trace propagators (W3C trace context and baggage).
    pub fn new(config: Config, stores: Stores, clock: SharedClock) -> Result<Self, StartupError> {
        Self::with_propagators(
            config,
            stores,
            clock,
            watchpost_correlation::Propagators::default(),
        )
    }

    /// State over opened `stores`, propagating trace context with `propagators` (from `OTEL_PROPAGATORS`).
    pub fn with_propagators(
        config: Config,
        stores: Stores,
        clock: SharedClock,
        propagators: watchpost_correlation::Propagators,
    ) -> Result<Self, StartupError> {
        let health = crate::wiring::health::registry(&config, &stores)
            .map_err(|e| setup_error("health checks", e))?;
        let metrics =
            crate::wiring::metrics::metrics(&config).map_err(|e| setup_error("metrics", e))?;
        crate::wiring::metrics::export_health(&metrics, &health);
        let attempts = crate::wiring::metrics::auth_attempts(&metrics)
            .map_err(|e| setup_error("metrics", e))?;
        let correlation = crate::wiring::correlation::layer(&config, propagators, clock.clone());
        crate::wiring::metrics::export(&metrics, |registry| correlation.register_metrics(registry));
        let auditor = crate::wiring::audit::auditor(&config, &stores, clock.clone())
            .map_err(|e| setup_error("the audit trail", e))?;
        crate::wiring::metrics::export(&metrics, |registry| auditor.register_metrics(registry));
        let ratelimit = crate::wiring::ratelimit::limiter(&config, &auditor)
            .map_err(|e| setup_error("rate limiting", e))?;
        crate::wiring::metrics::export(&metrics, |registry| ratelimit.register_metrics(registry));
        let notifiers = crate::wiring::incident::notifiers(&config)
            .map_err(|e| setup_error("notifications", e))?;
        let incidents =
            crate::wiring::incident::service(&config, &stores, clock.clone(), &auditor, &notifiers);
        crate::wiring::metrics::export(&metrics, |registry| incidents.register_metrics(registry));
        let incident_worker = crate::wiring::incident::start_worker(&incidents, notifiers);
        let keys = crate::keys::store_for(&stores);
        let auth = Arc::new(
            Authenticator::new(
                config.root_api_key.as_deref(),
                keys.clone(),
                config.auth_cache_ttl,
            )
            .with_attempt_observer(attempts),
        );
        Ok(Self {
            config: Arc::new(config),
            stores,
            keys,
            auth,
            clock,
            health,
            metrics,
            correlation,
            auditor,
            ratelimit,
            incidents,
            incident_worker: Arc::new(std::sync::Mutex::new(Some(incident_worker))),
        })
    }
}

/// The complete OpenAPI document of what [`router`] serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let mut doc = openapi::server_document();
    doc.merge(watchpost_health::openapi());
    doc.merge(watchpost_metrics::openapi());
    doc.merge(watchpost_correlation::openapi());
    doc.merge(watchpost_audit::openapi());
    doc.merge(watchpost_incident::openapi());
    doc
}

/// The server's router: every endpoint and every layer.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `extra` routes merged in behind the same layers, so they pay exactly what the
/// server's own endpoints pay (correlation, metrics, body limit, auth, rate limit, audit). Used by
/// `examples/bench_stacks/main.rs` to put a hello-world handler behind the full stack for `cargo xtask bench`.
pub fn router_with(state: AppState, extra: Router) -> Router {
    let limit = state.config.body_limit_bytes;
    let api = Router::new()
        .route("/auth/whoami", get(keys_api::whoami))
        .route(
            "/auth/keys",
            get(keys_api::list_keys).post(keys_api::create_key),
        )
        .route("/auth/keys/{id}", delete(keys_api::revoke_key))
        .with_state(state.clone());
    Router::new()
        .merge(api)
        .merge(extra)
        .merge(state.health.router())
        .merge(state.metrics.router())
        .merge(state.correlation.router())
        .merge(crate::wiring::audit::router(&state.config, &state.auditor))
        .merge(watchpost_incident::router(state.incidents.clone()))
        .merge(openapi::routes(openapi_document()))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // `Router::layer` wraps every route (and the fallbacks) after routing, so every layer sees
        // `MatchedPath`. One composed stack, not one `Router::layer` per layer: axum boxes each
        // layer it is given separately, and every box is cloned and every boxed future allocated
        // on every request. A request meets the layers in this order: correlation, metrics, body
        // limit, auth, rate limit, audit, problem bodies, handler. Panics are caught by the
        // correlation layer (500 problem+json with the request id, grouped in /errors).
        .layer(
            ServiceBuilder::new()
                .layer(state.correlation.clone())
                .layer(state.metrics.layer())
                .layer(RequestBodyLimitLayer::new(limit))
                // Back to axum's body type for the layers below (the limit stays in force).
                .map_request(|request: Request<Limited<Body>>| request.map(Body::new))
                .layer(DefaultBodyLimit::disable())
                .layer(AuthLayer::new(state.auth.clone()))
                .layer(state.ratelimit.layer())
                .layer(crate::wiring::audit::layer(&state.config, &state.auditor))
                .layer(ProblemBodiesLayer::new(limit)),
        )
}

async fn route_not_found(request: Request) -> Response {
    Problem::route_not_found(request.uri().path())
        .fill_from(request.extensions())
        .to_http_response()
        .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    Problem::method_not_allowed()
        .with_instance(request.uri().path())
        .fill_from(request.extensions())
        .to_http_response()
        .into_response()
}
