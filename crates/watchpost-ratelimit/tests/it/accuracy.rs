//! Accuracy: a synthetic trace (steady, bursty and abusive clients over many keys)
//! replayed through the limiter and judged against an exact sliding log.
//!
//! The trace (deterministic, 3,000 clients, 100 requests per minute, ten minutes):
//! - steady clients (70 % of the well-behaved ones): evenly spaced requests, ±10 % jitter,
//!   at 10 % to 80 % of the limit;
//! - bursty clients (the other 30 %): bursts of 3 to 12 requests within one second,
//!   bursts arriving at random (Poisson), one to four per minute in the documented and
//!   stress traces, one to nine per minute in the heavy-burst trace;
//! - abusive clients: random arrivals at 1.5 to 5 times the limit. The documented trace
//!   has 1 % abusive clients (10 % of the requests); a stress trace has 15 % (63 %); the
//!   heavy-burst trace has none.
//!
//! "Wrong" follows Cloudflare's measurement of the same algorithm: each decision is
//! compared with the exact rule (fewer than `limit` requests allowed in `(t − W, t]`)
//! applied to the requests the limiter itself admitted. A client "stayed under its limit"
//! when an independent exact log allowed every one of its requests.
//!
//! Asserted for the documented and stress traces: no client under its limit is ever
//! denied; steady and bursty clients see at most 0.01 % wrong decisions. Printed
//! (`-- --nocapture`): every figure. Abusive clients sit at the limit on every request,
//! where the counter's estimate (the previous window taken as evenly spread) and the exact
//! count straddle the limit on about a fifth of the decisions; this is the algorithm's
//! approximation, not rounding (rounding the weighted previous count to nearest or up
//! instead of down makes it worse: 23 % and 52 %), so the overall figure is about a fifth
//! of the abusive share of the requests: 2.0 % for the documented trace, above the 0.01 %
//! goal.
//!
//! The heavy-burst trace shows the other side of the same approximation: a client whose
//! previous window was one early burst is counted as if that burst were spread over the
//! window, so a client that stayed under its limit can be denied. The algorithm cannot
//! rule that out; the trace records how often it happens, and steady clients are still
//! judged exactly.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use watchpost_ratelimit::{MonotonicClock, RateLimitKey, RateLimiter, requests_per};

const LIMIT: u64 = 100;
const WINDOW_MS: u64 = 60_000;
const WINDOWS: u64 = 10;

/// SplitMix64: a deterministic generator, so the trace is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Exponential gap with the given mean (ms), at least 1 ms.
    fn gap(&mut self, mean: f64) -> u64 {
        ((-mean * (1.0 - self.unit()).ln()) as u64).max(1)
    }
}

/// The trace's mix of clients.
#[derive(Clone, Copy)]
struct Mix {
    /// Share of the clients that are abusive.
    abusive_share: f64,
    /// Bursty clients send one to this many bursts a minute on average.
    most_bursts_per_minute: f64,
}

/// (time ms, client) pairs, sorted by time, and each client's class (0 steady, 1 bursty, 2 abusive).
fn trace(clients: u32, mix: Mix, rng: &mut Rng) -> (Vec<(u64, u32)>, Vec<usize>) {
    let end = WINDOWS * WINDOW_MS;
    let mut events = Vec::new();
    let mut classes = Vec::new();
    let abusive_share = mix.abusive_share;
    for c in 0..clients {
        let kind = rng.unit();
        let steady_share = (1.0 - abusive_share) * 0.7;
        classes.push(if kind < steady_share {
            0
        } else if kind < 1.0 - abusive_share {
            1
        } else {
            2
        });
        let mut t = rng.next() % WINDOW_MS;
        if kind < steady_share {
            // Steady: evenly spaced with ±10 % jitter, at 10 % to 80 % of the limit.
            let rate = 0.1 + 0.7 * rng.unit();
            let period = WINDOW_MS as f64 / (rate * LIMIT as f64);
            while t < end {
                events.push((t, c));
                t += (period * (0.9 + 0.2 * rng.unit())) as u64;
            }
        } else if kind < 1.0 - abusive_share {
            // Bursty: bursts of 3 to 12 requests within a second, bursts arriving at random.
            let mean_gap =
                WINDOW_MS as f64 / (1.0 + (mix.most_bursts_per_minute - 1.0) * rng.unit());
            while t < end {
                let n = 3 + rng.next() % 10;
                for i in 0..n {
                    events.push((t + i * (1000 / n), c));
                }
                t += rng.gap(mean_gap);
            }
        } else {
            // Abusive: random arrivals at 1.5 to 5 times the limit.
            let rate = 1.5 + 3.5 * rng.unit();
            let mean = WINDOW_MS as f64 / (rate * LIMIT as f64);
            while t < end {
                events.push((t, c));
                t += rng.gap(mean);
            }
        }
    }
    events.sort_unstable();
    (events, classes)
}

/// Figures of one replay.
#[derive(Debug, Default)]
struct Figures {
    total: u64,
    /// Decisions unlike the independent exact log's (its state drifts from the limiter's).
    diverged: u64,
    /// Decisions unlike what the exact rule says given the requests the limiter itself admitted.
    wrong_allow: u64,
    wrong_deny: u64,
    /// Per class (steady, bursty, abusive): decisions and wrong decisions.
    by_class: [(u64, u64); 3],
    under: usize,
    /// Denials of steady and bursty clients.
    well_behaved_denials: u64,
    under_denied: usize,
}

fn replay(clients: u32, mix: Mix, seed: u64) -> Figures {
    let mut rng = Rng(seed);
    let (events, classes) = trace(clients, mix, &mut rng);
    let clock = MonotonicClock::manual();
    let limiter = RateLimiter::builder()
        .policies([requests_per(LIMIT, Duration::from_millis(WINDOW_MS))])
        .clock(clock.clone())
        .build()
        .unwrap();
    let set = limiter.default_policies().clone();
    let keys: Vec<RateLimitKey> = (0..clients)
        .map(|c| RateLimitKey::Custom(format!("client-{c}")))
        .collect();

    // The independent exact log, and the log of what the limiter admitted.
    let mut exact_log: HashMap<u32, VecDeque<u64>> = HashMap::new();
    let mut admitted: HashMap<u32, VecDeque<u64>> = HashMap::new();
    let mut exceeded = vec![false; clients as usize];
    let mut denied = vec![false; clients as usize];
    let mut f = Figures::default();
    let trim = |q: &mut VecDeque<u64>, t: u64| {
        while q.front().is_some_and(|&s| s + WINDOW_MS <= t) {
            q.pop_front();
        }
    };
    for &(t, c) in &events {
        let q = exact_log.entry(c).or_default();
        trim(q, t);
        let exact = (q.len() as u64) < LIMIT;
        if exact {
            q.push_back(t);
        } else {
            exceeded[c as usize] = true;
        }
        clock.set_ms(t);
        let got = limiter
            .try_check_now(&keys[c as usize], &set, 1)
            .unwrap()
            .allowed();
        let a = admitted.entry(c).or_default();
        trim(a, t);
        let judged = (a.len() as u64) < LIMIT;
        if got {
            a.push_back(t);
        } else {
            denied[c as usize] = true;
            if classes[c as usize] != 2 {
                f.well_behaved_denials += 1;
            }
        }
        f.total += 1;
        f.by_class[classes[c as usize]].0 += 1;
        if exact != got {
            f.diverged += 1;
        }
        if judged != got {
            f.by_class[classes[c as usize]].1 += 1;
            if got {
                f.wrong_allow += 1;
            } else {
                f.wrong_deny += 1;
            }
        }
    }
    let under: Vec<usize> = (0..clients as usize).filter(|&c| !exceeded[c]).collect();
    f.under = under.len();
    f.under_denied = under.iter().filter(|&&c| denied[c]).count();
    f
}

/// Percent, 0 for an empty class.
fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Replays one mix and prints its figures (`cargo test -- --nocapture` shows them).
fn replay_and_report(mix: Mix, label: &str) -> Figures {
    let f = replay(3_000, mix, 20_261_123);
    let class_pct = f.by_class.map(|(n, w)| pct(w, n));
    #[allow(clippy::print_stdout)] // printing the measured figure is the point of this line
    {
        println!(
            "accuracy ({label}): {} decisions ({:.1} % from abusive clients); wrong given the admitted history: {:.5} % \
             ({} wrongly allowed, {} wrongly denied; steady {:.5} %, bursty {:.5} %, abusive {:.5} %; \
             without the abusive clients {:.5} %); \
             diverged from an independent exact log: {:.3} %; steady and bursty denials: {}; \
             clients under the limit: {}, of them denied: {}",
            f.total,
            pct(f.by_class[2].0, f.total),
            pct(f.wrong_allow + f.wrong_deny, f.total),
            f.wrong_allow,
            f.wrong_deny,
            class_pct[0],
            class_pct[1],
            class_pct[2],
            pct(
                f.by_class[0].1 + f.by_class[1].1,
                f.by_class[0].0 + f.by_class[1].0
            ),
            pct(f.diverged, f.total),
            f.well_behaved_denials,
            f.under,
            f.under_denied
        );
    }
    assert!(
        f.total > 200_000,
        "the trace is large enough to measure 0.01 %: {}",
        f.total
    );
    assert_eq!(
        class_pct[0], 0.0,
        "steady clients are judged exactly ({label})"
    );
    f
}

#[test]
fn replay_matches_an_exact_sliding_log() {
    for (abusive_share, label) in [
        (0.01, "documented trace, 1 % abusive clients"),
        (0.15, "stress trace, 15 % abusive clients"),
    ] {
        let mix = Mix {
            abusive_share,
            most_bursts_per_minute: 4.0,
        };
        let f = replay_and_report(mix, label);
        assert!(f.under > 1_500);
        assert_eq!(
            f.under_denied, 0,
            "a client that stayed under its limit was denied ({label})"
        );
        let bursty_pct = pct(f.by_class[1].1, f.by_class[1].0);
        assert!(bursty_pct <= 0.01, "bursty clients: {bursty_pct} % wrong");
        // Regression guards on the approximation at the limit (see the module docs).
        let abusive_pct = pct(f.by_class[2].1, f.by_class[2].0);
        assert!(
            abusive_pct <= 21.0,
            "abusive clients: {abusive_pct} % wrong"
        );
    }
}

#[test]
fn heavy_bursts_show_the_approximation_on_both_sides() {
    let mix = Mix {
        abusive_share: 0.0,
        most_bursts_per_minute: 9.0,
    };
    let f = replay_and_report(mix, "heavy-burst trace, no abusive clients");
    // The limit is exercised: bursty clients are denied thousands of times.
    assert!(f.well_behaved_denials > 1_000, "{f:?}");
    // Both errors occur, and they stay regression-guarded (figures in docs/benchmarks.md).
    assert!(f.wrong_allow > 0 && f.wrong_deny > 0, "{f:?}");
    assert!(pct(f.wrong_allow + f.wrong_deny, f.total) <= 1.0, "{f:?}");
    assert!(f.under_denied <= 20, "{f:?}");
}
