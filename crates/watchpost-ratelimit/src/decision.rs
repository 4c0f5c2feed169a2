//! [`Decision`]: what the limiter answered for one request, per policy, without allocating.

use crate::policy::MAX_POLICIES_PER_SET;
use crate::window::WindowVerdict;

/// Why a decision was not made by the store itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degraded {
    /// The store failed or timed out, and the failure mode let the request through.
    FailOpen,
    /// The store failed or timed out, and the failure mode refused the request.
    FailClosed,
}

/// The answer for one request: allowed or not, with each policy's verdict in set order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    allowed: bool,
    len: u8,
    verdicts: [WindowVerdict; MAX_POLICIES_PER_SET],
    degraded: Option<Degraded>,
}

impl Decision {
    pub(crate) fn empty() -> Self {
        Self {
            allowed: true,
            len: 0,
            verdicts: [WindowVerdict::default(); MAX_POLICIES_PER_SET],
            degraded: None,
        }
    }

    pub(crate) fn push(&mut self, v: WindowVerdict) {
        if usize::from(self.len) < MAX_POLICIES_PER_SET {
            self.verdicts[usize::from(self.len)] = v;
            self.len += 1;
            self.allowed &= v.allowed;
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis store degrades
    /// A decision the store did not make: every policy reported with its full limit unknown
    /// (remaining 0, reset 0) and the outcome set by the failure mode.
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
    pub fn verdicts(&self) -> &[WindowVerdict] {
        &self.verdicts[..usize::from(self.len)]
    }

    /// Set when the store could not decide and the failure mode did.
    pub fn degraded_mode(&self) -> Option<Degraded> {
        self.degraded
    }

    /// Milliseconds until the request would be allowed (0 when allowed): the longest wait
    /// over the policies that refused it; `u64::MAX` when its cost exceeds a limit.
    pub fn retry_after_ms(&self) -> u64 {
        self.verdicts().iter().map(|v| v.wait_ms).max().unwrap_or(0)
    }

    /// The position in the set of the policy that decided: the refusing policy with the
    /// longest wait when denied, else the one with the fewest units remaining.
    pub fn binding_policy(&self) -> usize {
        let v = self.verdicts();
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
