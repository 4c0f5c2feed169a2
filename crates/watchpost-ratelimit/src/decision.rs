//! [`Decision`]: what the limiter answered for one request, per policy, without allocating.

use crate::policy::MAX_POLICIES_PER_SET;
use crate::window::{WindowCounts, WindowVerdict, evaluate};

/// One policy's result: the inputs (from the local store; the header values are derived
/// only when asked, keeping divisions off the decision path) or the finished verdict.
/// 24 bytes, so a whole [`Decision`] moves in a few vector stores rather than a `memcpy` call.
#[derive(Debug, Clone, Copy, Default)]
enum PolicyResult {
    #[default]
    Empty,
    Raw {
        prev: u32,
        cur: u32,
        limit: u32,
        window_ms: u32,
        elapsed: u32,
    },
    Done {
        allowed: bool,
        /// At most the limit, which is below 2^32.
        remaining: u32,
        reset_ms: u64,
        wait_ms: u64,
    },
}

impl PolicyResult {
    fn done(v: WindowVerdict) -> Self {
        PolicyResult::Done {
            allowed: v.allowed,
            remaining: u32::try_from(v.remaining).unwrap_or(u32::MAX),
            reset_ms: v.reset_ms,
            wait_ms: v.wait_ms,
        }
    }

    #[inline]
    fn verdict(&self, cost: u64) -> WindowVerdict {
        match *self {
            PolicyResult::Empty => WindowVerdict::default(),
            PolicyResult::Raw {
                prev,
                cur,
                limit,
                window_ms,
                elapsed,
            } => evaluate(
                WindowCounts {
                    window: 0,
                    cur,
                    prev,
                },
                u64::from(limit),
                u64::from(window_ms),
                u64::from(elapsed),
                cost,
            ),
            PolicyResult::Done {
                allowed,
                remaining,
                reset_ms,
                wait_ms,
            } => WindowVerdict {
                allowed,
                remaining: u64::from(remaining),
                reset_ms,
                wait_ms,
            },
        }
    }
}

/// Why a decision was not made by the store itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degraded {
    /// The store failed or timed out, and the failure mode let the request through.
    FailOpen,
    /// The store failed or timed out, and the failure mode refused the request.
    FailClosed,
}

/// The answer for one request: allowed or not, with each policy's verdict in set order.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    allowed: bool,
    len: u8,
    cost: u64,
    results: [PolicyResult; MAX_POLICIES_PER_SET],
    degraded: Option<Degraded>,
}

impl PartialEq for Decision {
    fn eq(&self, other: &Self) -> bool {
        self.allowed == other.allowed
            && self.degraded == other.degraded
            && self.verdicts().eq(other.verdicts())
    }
}

impl Eq for Decision {}

impl Decision {
    pub(crate) fn empty() -> Self {
        Self {
            allowed: true,
            len: 0,
            cost: 0,
            results: [PolicyResult::Empty; MAX_POLICIES_PER_SET],
            degraded: None,
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis store reports finished verdicts
    pub(crate) fn push(&mut self, v: WindowVerdict) {
        if usize::from(self.len) < MAX_POLICIES_PER_SET {
            self.results[usize::from(self.len)] = PolicyResult::done(v);
            self.len += 1;
            self.allowed &= v.allowed;
        }
    }

    /// Records a policy's inputs and whether it allowed the request.
    #[inline]
    pub(crate) fn push_raw(
        &mut self,
        counts: WindowCounts,
        limit: u64,
        window_ms: u64,
        elapsed: u64,
        cost: u64,
        allowed: bool,
    ) {
        if usize::from(self.len) < MAX_POLICIES_PER_SET {
            // Policies are validated to limits below 2^32; windows over 2^32 ms (49 days)
            // are rare enough to take the division now.
            self.results[usize::from(self.len)] =
                match (u32::try_from(limit), u32::try_from(window_ms)) {
                    (Ok(limit), Ok(window_ms)) => PolicyResult::Raw {
                        prev: counts.prev,
                        cur: counts.cur,
                        limit,
                        window_ms,
                        // elapsed < window_ms
                        elapsed: elapsed as u32,
                    },
                    _ => PolicyResult::done(evaluate(counts, limit, window_ms, elapsed, cost)),
                };
            self.cost = cost;
            self.len += 1;
            self.allowed &= allowed;
        }
    }

    /// A decision the store did not make: every policy reported with its full limit unknown
    /// (remaining 0, reset 0) and the outcome set by the failure mode.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis store degrades
    pub(crate) fn degraded(policies: usize, mode: Degraded, retry_ms: u64) -> Self {
        let mut d = Self::empty();
        let allowed = mode == Degraded::FailOpen;
        for _ in 0..policies.min(MAX_POLICIES_PER_SET) {
            d.push(WindowVerdict {
                allowed,
                remaining: 0,
                reset_ms: if allowed { 0 } else { retry_ms },
                wait_ms: if allowed { 0 } else { retry_ms },
            });
        }
        d.degraded = Some(mode);
        d
    }

    /// Whether the request may proceed.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// Each policy's verdict, in the order of the policy set.
    pub fn verdicts(&self) -> impl ExactSizeIterator<Item = WindowVerdict> + Clone + '_ {
        let cost = self.cost;
        self.results[..usize::from(self.len)]
            .iter()
            .map(move |r| r.verdict(cost))
    }

    /// Set when the store could not decide and the failure mode did.
    pub fn degraded_mode(&self) -> Option<Degraded> {
        self.degraded
    }

    /// Milliseconds until the request would be allowed (0 when allowed): the longest wait
    /// over the policies that refused it; `u64::MAX` when its cost exceeds a limit.
    pub fn retry_after_ms(&self) -> u64 {
        self.verdicts().map(|v| v.wait_ms).max().unwrap_or(0)
    }

    /// The position in the set of the policy that decided: the refusing policy with the
    /// longest wait when denied, else the one with the fewest units remaining.
    pub fn binding_policy(&self) -> usize {
        let mut v = [WindowVerdict::default(); MAX_POLICIES_PER_SET];
        for (i, x) in self.verdicts().enumerate() {
            v[i] = x;
        }
        let v = &v[..usize::from(self.len)];
        if self.allowed {
            (0..v.len()).min_by_key(|&i| v[i].remaining).unwrap_or(0)
        } else {
            (0..v.len())
                .filter(|&i| !v[i].allowed)
                .max_by_key(|&i| v[i].wait_ms)
                .unwrap_or(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_stays_small() {
        // Moved on every request: keep it within eight 16-byte stores.
        assert_eq!(std::mem::size_of::<PolicyResult>(), 24);
        assert!(std::mem::size_of::<Decision>() <= 112);
    }

    #[test]
    fn long_windows_keep_exact_verdicts() {
        let w = u64::from(u32::MAX) + 10;
        let counts = WindowCounts {
            window: 0,
            cur: 2,
            prev: 7,
        };
        let mut d = Decision::empty();
        d.push_raw(counts, 10, w, w / 2, 1, true);
        assert_eq!(d.verdicts().next(), Some(evaluate(counts, 10, w, w / 2, 1)));
    }
}
