//! [`MonotonicClock`]: the millisecond clock the limiter decides by, injectable for tests.
//!
//! Decisions need a monotonic clock (wall-clock steps would reset or freeze windows) that
//! is cheap to read on every request. [`MonotonicClock::system`] reads the operating
//! system's monotonic clock (`std::time::Instant`), which, unlike a raw TSC read, is
//! consistent across cores. [`MonotonicClock::tokio`] follows `tokio::time`, so a test
//! with paused time (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`)
//! controls every window edge. [`MonotonicClock::manual`] is moved by hand.
//! [`MonotonicClock::ticking`] (the limiter's default) reads a millisecond counter that
//! one background thread per process refreshes from the monotonic clock every
//! millisecond: a decision then costs one atomic load instead of a clock read (tens of
//! nanoseconds on virtual machines). It never goes backwards and lags real time by at
//! most one tick plus the thread's scheduling delay.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A monotonic millisecond clock whose origin is its creation.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    System(Instant),
    Tokio(tokio::time::Instant),
    Manual(Arc<AtomicU64>),
    Ticking(&'static Ticker),
}

/// The process-wide millisecond counter behind [`MonotonicClock::ticking`].
#[derive(Debug)]
struct Ticker {
    origin: Instant,
    now_ms: AtomicU64,
    running: AtomicBool,
}

const TICK: Duration = Duration::from_millis(1);

fn ticker() -> &'static Ticker {
    static TICKER: OnceLock<&'static Ticker> = OnceLock::new();
    TICKER.get_or_init(|| {
        let t: &'static Ticker = Box::leak(Box::new(Ticker {
            origin: Instant::now(),
            now_ms: AtomicU64::new(0),
            running: AtomicBool::new(true),
        }));
        let spawned = std::thread::Builder::new()
            .name("watchpost-ratelimit-clock".to_owned())
            .spawn(move || {
                loop {
                    t.now_ms
                        .store(duration_ms(t.origin.elapsed()), Ordering::Relaxed);
                    std::thread::sleep(TICK);
                }
            });
        if spawned.is_err() {
            // No thread: read the clock on every call instead.
            t.running.store(false, Ordering::Relaxed);
        }
        t
    })
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::system()
    }
}

impl MonotonicClock {
    /// The operating system's monotonic clock.
    pub fn system() -> Self {
        Self {
            source: Source::System(Instant::now()),
        }
    }

    /// The process-wide ticking millisecond counter (see the module docs); starts its thread on first use.
    pub fn ticking() -> Self {
        Self {
            source: Source::Ticking(ticker()),
        }
    }

    /// `tokio::time`'s clock: pausable and advanceable in tests.
    pub fn tokio() -> Self {
        Self {
            source: Source::Tokio(tokio::time::Instant::now()),
        }
    }

    /// A clock at 0 ms that moves only through [`advance`](Self::advance) or [`set_ms`](Self::set_ms);
    /// clones share the time.
    pub fn manual() -> Self {
        Self {
            source: Source::Manual(Arc::new(AtomicU64::new(0))),
        }
    }

    /// Milliseconds since the clock's origin.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match &self.source {
            Source::System(origin) => duration_ms(origin.elapsed()),
            Source::Tokio(origin) => duration_ms(origin.elapsed()),
            Source::Manual(ms) => ms.load(Ordering::Relaxed),
            Source::Ticking(t) => {
                if t.running.load(Ordering::Relaxed) {
                    t.now_ms.load(Ordering::Relaxed)
                } else {
                    duration_ms(t.origin.elapsed())
                }
            }
        }
    }

    /// Moves a manual clock forward (no effect on the other clocks).
    pub fn advance(&self, by: Duration) {
        if let Source::Manual(ms) = &self.source {
            ms.fetch_add(duration_ms(by), Ordering::Relaxed);
        }
    }

    /// Sets a manual clock (no effect on the other clocks).
    pub fn set_ms(&self, to: u64) {
        if let Source::Manual(ms) = &self.source {
            ms.store(to, Ordering::Relaxed);
        }
    }
}

#[inline]
fn duration_ms(d: Duration) -> u64 {
    // Whole milliseconds; u64 milliseconds last 584 million years.
    d.as_secs() * 1000 + u64::from(d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_is_shared_by_clones() {
        let c = MonotonicClock::manual();
        let d = c.clone();
        c.advance(Duration::from_millis(1500));
        assert_eq!(d.now_ms(), 1500);
        d.set_ms(10);
        assert_eq!(c.now_ms(), 10);
    }

    #[test]
    fn ticking_clock_moves_and_never_goes_back() {
        let c = MonotonicClock::ticking();
        let a = c.now_ms();
        std::thread::sleep(Duration::from_millis(30));
        let b = c.now_ms();
        assert!(b > a, "{a} -> {b}");
        assert!(b - a < 2_000);
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = MonotonicClock::tokio();
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(c.now_ms(), 2500);
    }
}
