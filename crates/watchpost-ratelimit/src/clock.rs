//! [`MonotonicClock`]: the millisecond clock the limiter decides by, injectable for tests.
//!
//! Decisions need a monotonic clock (wall-clock steps would reset or freeze windows) that
//! is cheap to read on every request. [`MonotonicClock::system`] reads the operating
//! system's monotonic clock (`std::time::Instant`), which, unlike a raw TSC read, is
//! consistent across cores. [`MonotonicClock::tokio`] follows `tokio::time`, so a test
//! with paused time (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`)
//! controls every window edge. [`MonotonicClock::manual`] is moved by hand.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = MonotonicClock::tokio();
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(c.now_ms(), 2500);
    }
}
