//! Sliding-window rate limits per API key, tenant or client IP, for axum and tower.
//!
//! A [`RateLimiter`] checks each request against one to four [`Policy`]s
//! ([`requests_per`]`(100, Duration::from_secs(60))`) with the sliding-window counter
//! described in [`window`], in integers. The count lives in a bounded in-process
//! [`LocalStore`] (a hard cap on keys, eviction that never stalls a request) or, with the
//! `redis` feature, in Redis, so that replicas share one limit. A denied request gets a
//! 429 `application/problem+json` (type `urn:watchpost:problem:quota-exceeded`) with an
//! exact `Retry-After`; every limited response carries the IETF `RateLimit-Policy` and
//! `RateLimit` fields (see [`headers`]).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use tower::ServiceExt;
//! use watchpost_ratelimit::{RateLimiter, requests_per};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let limiter = RateLimiter::builder()
//!     .policies([requests_per(2, Duration::from_secs(60))])
//!     .build()
//!     .expect("valid policy");
//! let app = Router::new().route("/", get(|| async { "hi" })).layer(limiter.layer());
//!
//! let get = || http::Request::get("/").body(axum::body::Body::empty()).unwrap();
//! let ok = app.clone().oneshot(get()).await.unwrap();
//! assert_eq!(ok.headers()["ratelimit-policy"], "\"default\";q=2;w=60");
//! assert_eq!(ok.headers()["ratelimit"], "\"default\";r=1;t=60");
//! app.clone().oneshot(get()).await.unwrap();
//! let refused = app.oneshot(get()).await.unwrap();
//! assert_eq!(refused.status(), 429);
//! assert_eq!(refused.headers()["content-type"], "application/problem+json");
//! # }
//! ```
//!
//! (Without `ConnectInfo` or a principal every request shares one key, as here; a real
//! server is served with `into_make_service_with_connect_info::<SocketAddr>()`.)
//!
//! # Keys
//!
//! By default a request counts against the principal's API key id
//! ([`watchpost_core::Principal`] in the request extensions), else its tenant, else the
//! client IP found by [`watchpost_core::TrustedProxies`] (forwarding headers are believed
//! only from trusted proxies; IPv6 grouped by /56). [`RateLimiterBuilder::key_fn`]
//! replaces the rule.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `redis` | off | `RedisStore`: shared limits through one Lua round trip per decision, with timeout, failure mode and circuit breaker |
//!
//! # Metrics
//!
//! [`RateLimiter::register_metrics`] registers `watchpost_ratelimit_decisions_total{policy,decision}`,
//! `watchpost_ratelimit_keys` and `watchpost_ratelimit_store_errors_total` (see [`metrics`]).

pub mod clock;
pub mod decision;
pub mod error;
pub mod headers;
pub mod key;
pub mod layer;
pub mod limiter;
pub mod local;
pub mod metrics;
pub mod policy;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod window;

pub use clock::MonotonicClock;
pub use decision::{Decision, Degraded};
pub use error::RateLimitError;
pub use key::RateLimitKey;
pub use layer::{RateLimit, RateLimitLayer, ResponseFuture};
pub use limiter::{
    DenialEvent, DenialHook, KeyFn, RateLimitConfig, RateLimiter, RateLimiterBuilder,
};
pub use local::LocalStore;
pub use policy::{Policy, PolicySet, requests_per};
#[cfg(feature = "redis")]
pub use redis_store::{FailureMode, RedisConfig, RedisStore};
pub use window::{WindowCounts, WindowVerdict};
