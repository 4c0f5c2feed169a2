//! [`MonotonicClock`]: the millisecond clock the limiter decides by, injectable for tests.
//!
//! Decisions need a monotonic clock (wall-clock steps would reset or freeze windows) that
//! is cheap to read on every request. The clocks:
//!
//! - [`MonotonicClock::coarse`] (the limiter's default on Linux, Android and FreeBSD) reads
//!   the kernel's `CLOCK_MONOTONIC_COARSE` through the vDSO: no system call, no TSC read, no
//!   thread; about 7 ns against about 29 ns for the precise monotonic clock on these virtual
//!   machines. It advances once per kernel tick (`CONFIG_HZ`: every 1 to 10 ms, 4 ms on the
//!   machines measured), so a decision can see the time up to one tick late. Windows are
//!   at least a second in practice and waits are reported in whole seconds, so a tick of lag
//!   moves a window edge by well under 1 % of it; a policy with a window of a few
//!   milliseconds wants [`MonotonicClock::system`].
//! - [`MonotonicClock::system`] reads the operating system's monotonic clock
//!   (`std::time::Instant`), which, unlike a raw TSC read, is consistent across cores.
//! - [`MonotonicClock::ticking`] (the default elsewhere) reads a millisecond counter that
//!   one background thread per process refreshes from the monotonic clock every
//!   millisecond while the clock is in use: a decision then costs two atomic loads instead
//!   of a clock read. When nobody has read the clock for [`IDLE_AFTER`] the thread parks, so
//!   an idle server is not woken a thousand times a second; the next read takes the time
//!   from the monotonic clock itself and wakes the thread. The counter never goes backwards
//!   and lags real time by at most one tick plus the thread's scheduling delay. While
//!   decisions are made, its thousand wake-ups a second cost more than the clock reads they
//!   save at any request rate a server reaches (on one core under load, 2 to 3 % of the
//!   core, and each wake-up preempts the request thread), which is why it is no longer the
//!   default where a coarse clock exists.
//! - [`MonotonicClock::tokio`] follows `tokio::time`, so a test with paused time
//!   (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`) controls every window
//!   edge. [`MonotonicClock::manual`] is moved by hand.

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
    /// `CLOCK_MONOTONIC_COARSE` in milliseconds at the clock's creation.
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    Coarse(u64),
}

/// The process-wide millisecond counter behind [`MonotonicClock::ticking`]. What every decision
/// reads comes first, in a cache line of its own: nothing else written nearby invalidates it.
#[derive(Debug)]
#[repr(C, align(64))]
struct Ticker {
    /// Milliseconds since `origin`, only ever raised (`fetch_max`).
    now_ms: AtomicU64,
    /// Whether the thread is parked (or was never started): readers read the clock themselves.
    parked: AtomicBool,
    /// Set by a reader, cleared by the thread every [`IDLE_AFTER`]: whether the clock was read.
    read: AtomicBool,
    origin: Instant,
    /// The refreshing thread, for readers to wake it.
    thread: OnceLock<std::thread::Thread>,
}

const TICK: Duration = Duration::from_millis(1);

/// How long the clock goes unread before its thread parks.
pub const IDLE_AFTER: Duration = Duration::from_millis(100);

impl Ticker {
    /// A ticker with its refreshing thread (if one can be spawned).
    fn start() -> &'static Self {
        let t: &'static Ticker = Box::leak(Box::new(Ticker {
            origin: Instant::now(),
            now_ms: AtomicU64::new(0),
            parked: AtomicBool::new(true),
            read: AtomicBool::new(true),
            thread: OnceLock::new(),
        }));
        let spawned = std::thread::Builder::new()
            .name("watchpost-ratelimit-clock".to_owned())
            .spawn(move || t.run());
        if let Ok(handle) = spawned {
            let _ = t.thread.set(handle.thread().clone());
            // Until now readers read the clock themselves; from here on the thread refreshes it.
            t.parked.store(false, Ordering::SeqCst);
        }
        t
    }

    /// The refreshing thread: a tick every millisecond while the clock is read, parked otherwise.
    fn run(&self) {
        let ticks_per_check = (IDLE_AFTER.as_millis() / TICK.as_millis()).max(1);
        let mut ticks = 0;
        loop {
            self.now_ms.fetch_max(self.elapsed_ms(), Ordering::Relaxed);
            std::thread::sleep(TICK);
            ticks += 1;
            if ticks < ticks_per_check {
                continue;
            }
            ticks = 0;
            if self.read.swap(false, Ordering::SeqCst) {
                continue;
            }
            // Unread for a whole period. A reader that still saw `parked == false` reads a
            // counter at most a tick old; the next one sees `true`, reads the clock itself and
            // clears the flag before unparking this thread (so a wake-up is never missed:
            // `unpark` before `park` makes `park` return at once).
            self.parked.store(true, Ordering::SeqCst);
            while self.parked.load(Ordering::SeqCst) {
                std::thread::park();
            }
        }
    }

    fn elapsed_ms(&self) -> u64 {
        duration_ms(self.origin.elapsed())
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        if self.parked.load(Ordering::Relaxed) {
            return self.wake();
        }
        if !self.read.load(Ordering::Relaxed) {
            self.read.store(true, Ordering::Relaxed);
        }
        self.now_ms.load(Ordering::Relaxed)
    }

    /// The slow path: the time from the monotonic clock, published, and the thread woken.
    #[cold]
    fn wake(&self) -> u64 {
        let now = self.elapsed_ms();
        let before = self.now_ms.fetch_max(now, Ordering::Relaxed);
        self.read.store(true, Ordering::Relaxed);
        if self.parked.swap(false, Ordering::SeqCst)
            && let Some(thread) = self.thread.get()
        {
            thread.unpark();
        } else if self.thread.get().is_none() {
            // No thread could be started: every read stays on this path.
            self.parked.store(true, Ordering::Relaxed);
        }
        now.max(before)
    }
}

fn ticker() -> &'static Ticker {
    static TICKER: OnceLock<&'static Ticker> = OnceLock::new();
    TICKER.get_or_init(Ticker::start)
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

    /// The kernel's coarse monotonic clock (`CLOCK_MONOTONIC_COARSE`, read through the vDSO
    /// without a system call): the limiter's default where the kernel has one (Linux, Android,
    /// FreeBSD), [`ticking`](Self::ticking) elsewhere. See the module docs.
    pub fn coarse() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        {
            Self {
                source: Source::Coarse(coarse_ms()),
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
        {
            Self::ticking()
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
            Source::Ticking(t) => t.now_ms(),
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
            Source::Coarse(origin) => coarse_ms().saturating_sub(*origin),
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

/// `CLOCK_MONOTONIC_COARSE` in whole milliseconds.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
#[inline]
fn coarse_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    // Both fields are non-negative for a monotonic clock.
    u64::try_from(t.tv_sec).unwrap_or(0) * 1000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000_000
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

    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    #[test]
    fn coarse_clock_never_goes_back_and_stays_within_a_tick_of_the_exact_clock() {
        // Exact readings bracket both coarse readings (its origin and the one compared), so a
        // preemption between two lines can only widen the bounds, never fail the test.
        let before_origin = Instant::now();
        let c = MonotonicClock::coarse();
        let after_origin = Instant::now();
        let mut last = c.now_ms();
        while before_origin.elapsed() < Duration::from_millis(100) {
            let now = c.now_ms();
            assert!(now >= last, "never backwards: {last} -> {now}");
            last = now;
        }
        let before_read = Instant::now();
        let coarse = c.now_ms();
        let after_read = Instant::now();
        let shortest = duration_ms(before_read.duration_since(after_origin));
        let longest = duration_ms(after_read.duration_since(before_origin));
        // Each coarse reading is up to one kernel tick (at most 10 ms) late, plus a millisecond
        // of truncation.
        assert!(
            coarse + 12 >= shortest && coarse <= longest + 12,
            "coarse {coarse} ms, exact between {shortest} and {longest} ms"
        );
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

    #[test]
    fn ticking_clock_parks_when_unread_and_wakes_on_the_next_read() {
        // Its own ticker, so other tests reading the process-wide one cannot keep it awake.
        let t = Ticker::start();
        t.now_ms();
        // Only the flag is watched here: watching does not count as a read. Generous deadlines,
        // because on a loaded machine a 1 ms tick can take much longer.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !t.parked.load(Ordering::SeqCst) {
            assert!(
                Instant::now() < deadline,
                "the thread parks after {IDLE_AFTER:?} without a read"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let frozen = t.now_ms.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            t.now_ms.load(Ordering::SeqCst),
            frozen,
            "a parked thread does not tick"
        );
        // The read that finds it parked takes the time from the monotonic clock.
        let before = t.elapsed_ms();
        let woken = t.now_ms();
        assert!(woken >= before, "fresh, not frozen: {frozen} -> {woken}");
        assert!(woken >= frozen + 50, "{frozen} -> {woken}");
        assert!(!t.parked.load(Ordering::SeqCst), "the read woke the thread");
        // Awake again: the counter follows time while it is read, and never goes backwards.
        let mut last = woken;
        while last < woken + 50 {
            assert!(
                Instant::now() < deadline + Duration::from_secs(20),
                "stuck at {last}"
            );
            std::thread::sleep(Duration::from_millis(5));
            let now = t.now_ms();
            assert!(now >= last, "never backwards: {last} -> {now}");
            last = now;
        }
        assert!(!t.parked.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let c = MonotonicClock::tokio();
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(c.now_ms(), 2500);
    }
}
