//! [`Policy`]: a named limit per window (`requests_per(100, Duration::from_secs(60))`), and
//! [`PolicySet`]: the policies one request is checked against.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use crate::error::RateLimitError;
use crate::metrics::{DecisionLabel, Metrics};
use crate::window::MAX_LIMIT_TIMES_WINDOW;

/// The most policies one request is checked against (they live inline in a [`crate::Decision`]).
pub const MAX_POLICIES_PER_SET: usize = 4;

/// A limit of `limit` units per sliding `window`, under a name used in headers and metric labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: Arc<str>,
    limit: u64,
    window_ms: u64,
}

/// `limit` requests per `window`, named `default`; rename with [`Policy::named`].
///
/// ```
/// use std::time::Duration;
/// let p = watchpost_ratelimit::requests_per(100, Duration::from_secs(60)).named("per-minute");
/// assert_eq!(p.limit(), 100);
/// assert_eq!(p.window(), Duration::from_secs(60));
/// ```
pub fn requests_per(limit: u64, window: Duration) -> Policy {
    Policy {
        name: Arc::from("default"),
        limit,
        window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
    }
}

impl Policy {
    /// Renames the policy (the name appears in `RateLimit-Policy` and in the `policy` metric label,
    /// so keep the set of names small and fixed).
    #[must_use]
    pub fn named(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Units allowed per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The window.
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms)
    }

    /// The window in milliseconds.
    pub fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Checks that the policy can be enforced exactly by every store.
    pub fn validate(&self) -> Result<(), RateLimitError> {
        let bad = |why: &str| RateLimitError::InvalidPolicy {
            name: self.name.to_string(),
            why: why.to_owned(),
        };
        if self.limit == 0 {
            return Err(bad(
                "the limit must be at least 1; to block a route, do not serve it",
            ));
        }
        if self.window_ms == 0 {
            return Err(bad("the window must be at least 1 ms"));
        }
        if u128::from(self.limit) * u128::from(self.window_ms) >= MAX_LIMIT_TIMES_WINDOW
            || self.limit > u64::from(u32::MAX)
        {
            return Err(bad(
                "limit × window (ms) must stay below 2^53 and the limit below 2^32; use a shorter window",
            ));
        }
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(
                "the name must be non-empty ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(())
    }
}

/// The policies a request is checked against; allowed only when every one allows it.
///
/// Each policy gets a numeric id inside the limiter, so two sets that share a policy
/// value share its counts only when they were given the same id (see [`crate::RateLimiterBuilder`]).
#[derive(Debug, Clone)]
pub struct PolicySet {
    pub(crate) policies: Vec<(u32, Policy)>,
    pub(crate) header_policy: http::HeaderValue,
    /// Per policy, the decision counters by [`DecisionLabel`] order (resolved once, not per request).
    pub(crate) counters: Vec<[Counter; 5]>,
    /// Per policy, the last window index seen, so most decisions need no division.
    pub(crate) windows: Vec<WindowCache>,
}

/// The current window index of one policy, cached; a stale value only costs a division.
#[derive(Debug, Default)]
pub(crate) struct WindowCache(AtomicU64);

impl Clone for WindowCache {
    fn clone(&self) -> Self {
        Self(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl WindowCache {
    /// `(now_ms / window_ms, now_ms % window_ms)`.
    #[inline]
    pub(crate) fn split(&self, now_ms: u64, window_ms: u64) -> (u64, u64) {
        let idx = self.0.load(Ordering::Relaxed);
        let start = idx * window_ms;
        if let Some(elapsed) = now_ms.checked_sub(start)
            && elapsed < window_ms
        {
            return (idx, elapsed);
        }
        let idx = now_ms / window_ms;
        self.0.store(idx, Ordering::Relaxed);
        (idx, now_ms - idx * window_ms)
    }
}

impl PolicySet {
    pub(crate) fn new(policies: Vec<(u32, Policy)>) -> Result<Self, RateLimitError> {
        if policies.is_empty() || policies.len() > MAX_POLICIES_PER_SET {
            return Err(RateLimitError::InvalidPolicy {
                name: policies
                    .first()
                    .map(|p| p.1.name().to_owned())
                    .unwrap_or_default(),
                why: format!("a policy set needs 1 to {MAX_POLICIES_PER_SET} policies"),
            });
        }
        for (_, p) in &policies {
            p.validate()?;
        }
        let header = policies
            .iter()
            .map(|(_, p)| {
                format!(
                    "\"{}\";q={};w={}",
                    p.name(),
                    p.limit(),
                    p.window_ms().div_ceil(1000)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let header_policy =
            http::HeaderValue::from_str(&header).map_err(|_| RateLimitError::InvalidPolicy {
                name: policies[0].1.name().to_owned(),
                why: "the policy does not render as a header value".to_owned(),
            })?;
        Ok(Self {
            header_policy,
            counters: Vec::new(),
            windows: (0..policies.len())
                .map(|_| WindowCache::default())
                .collect(),
            policies,
        })
    }

    pub(crate) fn attach_counters(&mut self, metrics: &Metrics) {
        self.counters = self
            .policies
            .iter()
            .map(|(_, p)| DecisionLabel::ALL.map(|l| metrics.decision_counter(p.name(), l)))
            .collect();
    }

    pub(crate) fn count(&self, position: usize, label: DecisionLabel) {
        if let Some(c) = self.counters.get(position) {
            c[label as usize].inc();
        }
    }

    /// The policies, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter().map(|(_, p)| p)
    }

    /// The `RateLimit-Policy` field value for this set (`"default";q=1000;w=60`).
    pub fn header_value(&self) -> &http::HeaderValue {
        &self.header_policy
    }
}
