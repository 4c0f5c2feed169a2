//! [`RequestSummary`]: the counts and latency percentiles behind `GET /metrics/summary`.
//!
//! Percentiles come from a log-linear histogram of durations in microseconds (16 sub-buckets
//! per power of two, so an estimate is within about 3 % of the true value) held in atomics:
//! recording is lock-free and memory is fixed, whatever the traffic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Methods the summary (and the HTTP layer) name; any other method is `_OTHER`.
pub(crate) const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

/// The index of `method` in [`METHODS`].
pub(crate) fn method_index(method: &http::Method) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered above the linear range: up to 2^44 µs (about 200 days).
const MAX_EXP: u32 = 44;
const SLOTS: usize = SUB + (MAX_EXP as usize - SUB_BITS as usize + 1) * SUB;

fn slot(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = (63 - us.leading_zeros()).min(MAX_EXP);
    let sub = ((us >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + sub
}

/// The midpoint of a slot, in microseconds.
fn slot_value(slot: usize) -> f64 {
    if slot < SUB {
        return slot as f64;
    }
    let exp = ((slot - SUB) / SUB) as u32 + SUB_BITS;
    let sub = ((slot - SUB) % SUB) as u64;
    let width = 1u64 << (exp - SUB_BITS);
    let low = (1u64 << exp) + sub * width;
    low as f64 + width as f64 / 2.0
}

/// Request counts and latency distribution since start.
#[derive(Debug)]
pub struct RequestSummary {
    since: DateTime<Utc>,
    total: AtomicU64,
    errors: AtomicU64,
    duration_us: AtomicU64,
    by_status: Box<[AtomicU64]>,
    by_method: [AtomicU64; METHODS.len()],
    latency: Box<[AtomicU64]>,
}

/// The JSON body of `GET /metrics/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SummarySnapshot {
    /// Requests answered since `since`.
    pub total_requests: u64,
    /// Requests answered with a status of 500 or more.
    pub total_errors: u64,
    /// Requests by status code (`"200"`).
    pub requests_by_status: BTreeMap<String, u64>,
    /// Requests by method (`GET`; unknown methods as `_OTHER`).
    pub requests_by_method: BTreeMap<String, u64>,
    /// Mean duration, milliseconds.
    pub average_duration_ms: f64,
    /// Median duration, milliseconds (estimate within about 3 %).
    pub p50_duration_ms: f64,
    /// 95th percentile duration, milliseconds.
    pub p95_duration_ms: f64,
    /// 99th percentile duration, milliseconds.
    pub p99_duration_ms: f64,
    /// When counting started (RFC 3339).
    pub since: DateTime<Utc>,
}

impl RequestSummary {
    /// An empty summary counting from `since`.
    pub fn new(since: DateTime<Utc>) -> Self {
        Self {
            since,
            total: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            duration_us: AtomicU64::new(0),
            by_status: (100..600).map(|_| AtomicU64::new(0)).collect(),
            by_method: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Counts one answered request.
    pub fn record(&self, method_index: usize, status: u16, duration: Duration) {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.total.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.duration_us.fetch_add(us, Ordering::Relaxed);
        if let Some(c) = self.by_status.get(usize::from(status.saturating_sub(100))) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(c) = self.by_method.get(method_index) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[slot(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// The figures now.
    pub fn snapshot(&self) -> SummarySnapshot {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let observed: u64 = counts.iter().sum();
        let percentile = |p: f64| -> f64 {
            if observed == 0 {
                return 0.0;
            }
            let rank = ((p * observed as f64).ceil() as u64).clamp(1, observed);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return round3(slot_value(i) / 1000.0);
                }
            }
            0.0
        };
        let total = self.total.load(Ordering::Relaxed);
        let sum_us = self.duration_us.load(Ordering::Relaxed);
        SummarySnapshot {
            total_requests: total,
            total_errors: self.errors.load(Ordering::Relaxed),
            requests_by_status: self
                .by_status
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let n = c.load(Ordering::Relaxed);
                    (n > 0).then(|| ((i + 100).to_string(), n))
                })
                .collect(),
            requests_by_method: METHODS
                .iter()
                .zip(&self.by_method)
                .filter_map(|(m, c)| {
                    let n = c.load(Ordering::Relaxed);
                    (n > 0).then(|| ((*m).to_owned(), n))
                })
                .collect(),
            average_duration_ms: if total == 0 {
                0.0
            } else {
                round3(sum_us as f64 / total as f64 / 1000.0)
            },
            p50_duration_ms: percentile(0.50),
            p95_duration_ms: percentile(0.95),
            p99_duration_ms: percentile(0.99),
            since: self.since,
        }
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_monotonic_and_close() {
        let mut last = 0;
        for us in [
            0u64,
            1,
            15,
            16,
            17,
            100,
            1_000,
            65_000,
            1_000_000,
            10_000_000_000,
        ] {
            let s = slot(us);
            assert!(s >= last);
            last = s;
            let v = slot_value(s);
            assert!(
                (v - us as f64).abs() <= us as f64 * 0.04 + 0.5,
                "{us} -> {v}"
            );
        }
        assert!(slot(u64::MAX) < SLOTS);
    }

    #[test]
    fn percentiles_from_a_known_mix() {
        let s = RequestSummary::new(DateTime::UNIX_EPOCH);
        for i in 1..=100u64 {
            s.record(0, 200, Duration::from_millis(i));
        }
        let snap = s.snapshot();
        assert_eq!(snap.total_requests, 100);
        assert!((snap.average_duration_ms - 50.5).abs() < 1e-9);
        assert!((snap.p50_duration_ms - 50.0).abs() <= 1.5, "{snap:?}");
        assert!((snap.p95_duration_ms - 95.0).abs() <= 3.0, "{snap:?}");
        assert!((snap.p99_duration_ms - 99.0).abs() <= 3.0, "{snap:?}");
    }
}
