//! Shared vocabulary of the Watchpost crates.
//!
//! Every Watchpost crate speaks in these types, so that a request id minted by the
//! correlation layer, a [`Principal`] found by the server's authentication and a
//! [`Problem`] rendered by the rate limiter all look the same to the next crate and
//! to operators. This crate deliberately depends on no web framework, no async
//! runtime and no database driver: only `http` for header and status types, `serde`,
//! `chrono`, `uuid` and `ipnet`.
//!
//! # Example
//!
//! ```
//! use watchpost_core::{Problem, RequestId, Principal, Role, Access, authorize};
//!
//! let id = RequestId::generate();
//! assert!(watchpost_core::id::is_valid_id(id.as_str()));
//!
//! let mut extensions = http::Extensions::new();
//! // Anonymous requests are refused by root-only endpoints with a 401 problem.
//! let problem = authorize(&extensions, Access::Root).unwrap_err();
//! assert_eq!(problem.status(), http::StatusCode::UNAUTHORIZED);
//!
//! extensions.insert(Principal::new("k1", "ci", Some("acme".into()), Role::Tenant));
//! let problem = authorize(&extensions, Access::Root).unwrap_err();
//! assert_eq!(problem.status(), http::StatusCode::FORBIDDEN);
//! assert_eq!(problem.content_type(), "application/problem+json");
//! ```
//!
//! # Modules
//!
//! | module | what lives there |
//! | --- | --- |
//! | [`id`] | time-sortable request and correlation ids and the id validator |
//! | [`context`] | [`RequestContext`]: the ids, trace, principal, client IP and route of one request |
//! | [`principal`] | [`Principal`], [`Role`], [`AuthFailure`] and [`authorize`] |
//! | [`severity`] | [`Severity`] (critical, warning, info) and [`Priority`] (P0 to P3) |
//! | [`health`] | [`HealthStatus`] (pass, warn, fail) |
//! | [`problem`] | [`Problem`], an RFC 9457 `application/problem+json` value |
//! | [`client_ip`] | [`TrustedProxies`] and the rule for `Forwarded` and `X-Forwarded-For` |
//! | [`clock`] | [`Clock`], [`SystemClock`] and [`ManualClock`] |
//!
//! This crate has no cargo features.

pub mod client_ip;
pub mod clock;
pub mod context;
pub mod health;
pub mod id;
pub mod principal;
pub mod problem;
pub mod severity;

pub use client_ip::{ClientIpError, TrustedProxies};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use context::{RequestContext, SpanId, TraceId};
pub use health::HealthStatus;
pub use id::{CorrelationId, InvalidId, RequestId};
pub use principal::{Access, AuthFailure, Principal, Role, authorize};
pub use problem::Problem;
pub use severity::{Priority, Severity};
