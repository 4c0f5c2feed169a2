//! The response fields: IETF `RateLimit-Policy` and `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers-11), `Retry-After`, the legacy `X-RateLimit-*`
//! trio, and the 429 problem body.
//!
//! - `RateLimit-Policy: "default";q=1000;w=60` lists every policy of the set (quota `q`,
//!   window `w` in seconds).
//! - `RateLimit: "default";r=42;t=17` gives, per policy, the units remaining `r` and the
//!   seconds `t` until the policy resets (the end of the current window while units
//!   remain, else the first moment a request of the same cost passes), rounded up.
//! - `Retry-After` (429 only) is the exact wait in whole seconds, rounded up, at least 1.
//! - `X-RateLimit-Limit`, `-Remaining`, `-Reset` (opt-in) describe the binding policy,
//!   with `Reset` in seconds from now.

use http::{HeaderName, HeaderValue, StatusCode};
use watchpost_core::Problem;

use crate::decision::Decision;
use crate::policy::PolicySet;

/// `RateLimit-Policy`.
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-RateLimit-Limit` (legacy, opt-in).
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining` (legacy, opt-in).
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset` (legacy, opt-in).
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Whole seconds, rounded up; an impossible wait (`u64::MAX`) becomes the longest window.
pub(crate) fn secs_up(ms: u64, set: &PolicySet) -> u64 {
    if ms == u64::MAX {
        set.iter()
            .map(|p| p.window_ms().div_ceil(1000))
            .max()
            .unwrap_or(1)
    } else {
        ms.div_ceil(1000)
    }
}

/// The fields every response on a limited route carries (held inline: no allocation beyond
/// the `RateLimit` value itself).
#[derive(Debug, Clone)]
pub(crate) struct RateLimitFields {
    policy: HeaderValue,
    ratelimit: Option<HeaderValue>,
    legacy: Option<[HeaderValue; 3]>,
}

impl RateLimitFields {
    pub(crate) fn new(set: &PolicySet, decision: &Decision, legacy: bool) -> Self {
        let mut value = String::with_capacity(32 * decision.verdicts().len());
        let mut digits = itoa::Buffer::new();
        for (v, p) in decision.verdicts().zip(set.iter()) {
            if !value.is_empty() {
                value.push_str(", ");
            }
            // `"name";r=42;t=17`, written piece by piece: this runs on every limited response.
            value.push('"');
            value.push_str(p.name());
            value.push_str("\";r=");
            value.push_str(digits.format(v.remaining));
            value.push_str(";t=");
            value.push_str(digits.format(secs_up(v.reset_ms, set)));
        }
        // The text becomes the header's bytes as it is (no copy); policy names are validated
        // tokens, so the check only guards against a future change.
        let ratelimit = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok();
        let legacy = if legacy {
            let b = decision.binding_policy();
            match (decision.verdicts().nth(b), set.iter().nth(b)) {
                (Some(v), Some(p)) => Some([
                    HeaderValue::from(p.limit()),
                    HeaderValue::from(v.remaining),
                    HeaderValue::from(secs_up(v.reset_ms, set)),
                ]),
                _ => None,
            }
        } else {
            None
        };
        Self {
            policy: set.header_value().clone(),
            ratelimit,
            legacy,
        }
    }

    pub(crate) fn apply(self, headers: &mut http::HeaderMap) {
        headers.insert(RATELIMIT_POLICY, self.policy);
        if let Some(v) = self.ratelimit {
            headers.insert(RATELIMIT, v);
        }
        if let Some([limit, remaining, reset]) = self.legacy {
            headers.insert(X_RATELIMIT_LIMIT, limit);
            headers.insert(X_RATELIMIT_REMAINING, remaining);
            headers.insert(X_RATELIMIT_RESET, reset);
        }
    }
}

/// The 429 problem for a denied decision: type `quota-exceeded`, the violated policies,
/// and `retryAfter` in seconds.
pub fn quota_exceeded(set: &PolicySet, decision: &Decision) -> Problem {
    let retry = secs_up(decision.retry_after_ms(), set).max(1);
    let violated: Vec<serde_json::Value> = decision
        .verdicts()
        .zip(set.iter())
        .filter(|(v, _)| !v.allowed)
        .map(|(v, p)| {
            serde_json::json!({
                "policy": p.name(),
                "limit": p.limit(),
                "windowSeconds": p.window_ms().div_ceil(1000),
                "retryAfterSeconds": secs_up(v.wait_ms, set).max(1),
            })
        })
        .collect();
    let names: Vec<&str> = decision
        .verdicts()
        .zip(set.iter())
        .filter(|(v, _)| !v.allowed)
        .map(|(_, p)| p.name())
        .collect();
    Problem::new(StatusCode::TOO_MANY_REQUESTS)
        .with_type(watchpost_core::problem::type_uri("quota-exceeded"))
        .with_detail(format!(
            "rate limit exceeded ({}); retry in {retry} s",
            names.join(", ")
        ))
        .with_extension("violatedPolicies", violated)
        .with_extension("retryAfter", retry)
}

/// `Retry-After` for a denied decision.
pub(crate) fn retry_after(set: &PolicySet, decision: &Decision) -> HeaderValue {
    HeaderValue::from(secs_up(decision.retry_after_ms(), set).max(1))
}
