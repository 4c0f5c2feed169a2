//! The sliding-window counter arithmetic, in integers, shared by every store.
//!
//! Time is cut into fixed windows of `W` milliseconds; window `n` covers
//! `[n·W, (n+1)·W)`. A key keeps two counts: `cur`, the units consumed in the current
//! window, and `prev`, the units consumed in the window before it. At `e` milliseconds
//! into the current window the estimated use of the last `W` milliseconds is
//!
//! ```text
//! used = floor(prev · (W − e) / W) + cur
//! ```
//!
//! (the previous window's count weighted by the part of it still inside the sliding
//! window, rounded down), and a request of cost `c` is allowed when `used + c ≤ limit`.
//! An allowed request adds `c` to `cur`; a denied one changes nothing. When time moves
//! into the next window `cur` becomes `prev`; after two or more windows both are zero,
//! which is also the state of a key never seen: an entry that old carries no information
//! and can be dropped at any time.
//!
//! The Redis Lua script (feature `redis`) computes exactly the same numbers; a property
//! test checks that both stores agree decision for decision.

/// The largest `limit × window_ms` product accepted, so that every intermediate value
/// stays exact in the Redis script's double-precision numbers (2^53).
pub(crate) const MAX_LIMIT_TIMES_WINDOW: u128 = 1 << 53;

/// The counts of one key under one policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Index of the window `cur` belongs to (`now_ms / window_ms`, truncated to 32 bits).
    pub window: u32,
    /// Units consumed in that window.
    pub cur: u32,
    /// Units consumed in the window before it.
    pub prev: u32,
}

/// What one policy says about one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowVerdict {
    /// Whether this policy lets the request through.
    pub allowed: bool,
    /// Units left after this request (after it was counted, when allowed).
    pub remaining: u64,
    /// Milliseconds until this policy resets: until the current window ends when units
    /// remain, else until the next request of the same cost would be allowed.
    pub reset_ms: u64,
    /// Milliseconds until a request of this cost would be allowed (0 when allowed now);
    /// `u64::MAX` when the cost is above the limit and no wait helps.
    pub wait_ms: u64,
}

impl WindowCounts {
    /// The counts as seen at window `now_window`: rolled forward, without changing meaning.
    #[inline]
    pub fn rolled(self, now_window: u32) -> Self {
        match now_window.wrapping_sub(self.window) {
            0 => self,
            1 => Self {
                window: now_window,
                cur: 0,
                prev: self.cur,
            },
            _ => Self {
                window: now_window,
                cur: 0,
                prev: 0,
            },
        }
    }
}

/// Whether a request of `cost` passes, with `elapsed` ms of the current window gone:
/// `floor(prev · left / W) + cur + cost ≤ limit`, decided with multiplications only
/// (`floor(x / W) ≤ a  ⇔  x < (a + 1) · W`).
#[inline]
pub fn allows(counts: WindowCounts, limit: u64, window_ms: u64, elapsed: u64, cost: u64) -> bool {
    let cur = u64::from(counts.cur);
    if cur + cost > limit {
        return false;
    }
    let room = limit - cur - cost;
    u64::from(counts.prev) * (window_ms - elapsed) < (room + 1) * window_ms
}

/// Decides a request of `cost` against `limit` per `window_ms` at `now_ms`, given counts
/// already rolled to the current window. Returns the verdict; the caller adds `cost` to
/// `cur` when every policy allowed.
#[inline]
pub fn evaluate(
    counts: WindowCounts,
    limit: u64,
    window_ms: u64,
    now_ms: u64,
    cost: u64,
) -> WindowVerdict {
    let elapsed = now_ms % window_ms;
    let left = window_ms - elapsed;
    let prev = u64::from(counts.prev);
    let cur = u64::from(counts.cur);
    let used = prev * left / window_ms + cur;
    if used + cost <= limit {
        let remaining = limit - used - cost;
        let reset_ms = if remaining >= cost.max(1) {
            left
        } else {
            wait_for(prev, cur + cost, limit, window_ms, elapsed, cost.max(1))
        };
        WindowVerdict {
            allowed: true,
            remaining,
            reset_ms,
            wait_ms: 0,
        }
    } else {
        let wait_ms = wait_for(prev, cur, limit, window_ms, elapsed, cost);
        WindowVerdict {
            allowed: false,
            remaining: limit.saturating_sub(used),
            reset_ms: wait_ms,
            wait_ms,
        }
    }
}

/// Milliseconds from `elapsed` until `floor(p · (W − e) / W) + c + cost ≤ limit` holds,
/// with the counts moving forward a window if the current one cannot make room.
#[inline]
fn wait_for(prev: u64, cur: u64, limit: u64, w: u64, elapsed: u64, cost: u64) -> u64 {
    if cost > limit {
        return u64::MAX;
    }
    if cur + cost <= limit {
        // Room appears in this window once the weighted previous count is small enough.
        let room = limit - cur - cost;
        let e = earliest_elapsed(prev, room, w);
        e.saturating_sub(elapsed)
    } else {
        // Next window: what is `cur` now becomes `prev`, the new `cur` is zero.
        let room = limit - cost;
        (w - elapsed) + earliest_elapsed(cur, room, w)
    }
}

/// The smallest `e` in `[0, W]` with `floor(p · (W − e) / W) ≤ room`.
#[inline]
fn earliest_elapsed(p: u64, room: u64, w: u64) -> u64 {
    if p <= room {
        return 0;
    }
    // floor(p(W−e)/W) ≤ room  ⇔  p(W−e) ≤ (room+1)W − 1  ⇔  W − e ≤ ((room+1)W − 1) / p.
    let max_left = ((room + 1) * w - 1) / p;
    w - max_left.min(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: the first millisecond at which the request would pass.
    fn brute_wait(c: WindowCounts, limit: u64, w: u64, now: u64, cost: u64) -> u64 {
        for t in now..now + 3 * w {
            let rolled = c.rolled((t / w) as u32);
            if evaluate_used(rolled, w, t) + cost <= limit {
                return t - now;
            }
        }
        u64::MAX
    }

    fn evaluate_used(c: WindowCounts, w: u64, t: u64) -> u64 {
        u64::from(c.prev) * (w - t % w) / w + u64::from(c.cur)
    }

    #[test]
    fn wait_matches_brute_force() {
        for limit in [1u64, 3, 10] {
            for w in [7u64, 100, 1000] {
                for prev in 0..=limit as u32 {
                    for cur in 0..=limit as u32 {
                        for now in [0, 1, w / 3, w / 2, w - 1] {
                            let c = WindowCounts {
                                window: 0,
                                cur,
                                prev,
                            };
                            for cost in [1, 2] {
                                let v = evaluate(c, limit, w, now, cost);
                                assert_eq!(v.allowed, allows(c, limit, w, now % w, cost));
                                if !v.allowed {
                                    assert_eq!(
                                        v.wait_ms,
                                        brute_wait(c, limit, w, now, cost),
                                        "limit {limit} w {w} prev {prev} cur {cur} now {now} cost {cost}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rolls_forward() {
        let c = WindowCounts {
            window: 5,
            cur: 3,
            prev: 2,
        };
        assert_eq!(c.rolled(5), c);
        assert_eq!(
            c.rolled(6),
            WindowCounts {
                window: 6,
                cur: 0,
                prev: 3
            }
        );
        assert_eq!(
            c.rolled(8),
            WindowCounts {
                window: 8,
                cur: 0,
                prev: 0
            }
        );
    }

    #[test]
    fn cost_above_limit_never_passes() {
        let v = evaluate(WindowCounts::default(), 5, 1000, 0, 6);
        assert!(!v.allowed);
        assert_eq!(v.wait_ms, u64::MAX);
    }
}
