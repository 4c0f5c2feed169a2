//! Criterion benchmarks of watchpost-ratelimit against governor 0.10 keyed (DashMap store),
//! measured in the same run on the same keys.
//!
//! - `decision/1t_10k_warm`: one thread, 10,000 warm IP keys, cycling.
//! - `decision/2t_distinct`: two threads, each on its own 10,000 keys (elements = decisions).
//! - `decision/2t_one_key`: two threads on one shared key.
//! - `layer/overhead`: an axum hello handler with and without the layer.
//! - `redis/decision` (feature `redis`; Redis on 127.0.0.1:6379 or `WATCHPOST_TEST_REDIS_URL`).
//!
//! Memory per key at 1,000,000 IP keys, the longest single decision while those keys are
//! inserted (growth and eviction included), and the Redis p99 are measured outside
//! criterion and printed: memory as the resident-set (RSS, /proc/self/statm) delta of
//! inserting the keys, for both limiters (`WATCHPOST_BENCH_SKIP_MEMORY=1` skips this
//! phase, e.g. to profile one benchmark alone).
#![allow(clippy::print_stdout)] // printing the figures measured outside criterion is the point

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use governor::{Quota, RateLimiter as Governor};
use tower::ServiceExt;
use watchpost_ratelimit::{MonotonicClock, RateLimitKey, RateLimiter, requests_per};

const WARM_KEYS: u32 = 10_000;
const BIG: u32 = 1_000_000_000;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

fn ours(max_keys: usize) -> RateLimiter {
    RateLimiter::builder()
        .policies([requests_per(u64::from(BIG), Duration::from_secs(60))])
        .max_keys(max_keys)
        .build()
        .expect("valid policy")
}

fn governor() -> Governor<
    IpAddr,
    governor::state::keyed::DashMapStateStore<IpAddr>,
    governor::clock::DefaultClock,
> {
    Governor::dashmap(Quota::per_minute(NonZeroU32::new(BIG).expect("non-zero")))
}

fn decisions(c: &mut Criterion) {
    let mut g = c.benchmark_group("decision");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let keys: Vec<RateLimitKey> = (0..WARM_KEYS).map(|i| RateLimitKey::Ip(ip(i))).collect();
    let ips: Vec<IpAddr> = (0..WARM_KEYS).map(ip).collect();

    g.throughput(Throughput::Elements(1));
    let l = ours(1_000_000);
    let set = l.default_policies().clone();
    for k in &keys {
        l.try_check_now(k, &set, 1);
    }
    let mut i = 0usize;
    g.bench_function("1t_10k_warm/watchpost", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            black_box(l.try_check_now(&keys[i], &set, 1))
        })
    });
    // The same store on the other clocks, for comparison with the default coarse clock: a
    // hand-moved clock (the decision without any clock read), the precise system clock read on
    // every decision, and the counter a background thread refreshes every millisecond.
    for (name, clock) in [
        ("no_clock", MonotonicClock::manual()),
        ("system_clock", MonotonicClock::system()),
        ("ticking_clock", MonotonicClock::ticking()),
    ] {
        let other = RateLimiter::builder()
            .policies([requests_per(u64::from(BIG), Duration::from_secs(60))])
            .clock(clock)
            .build()
            .expect("valid policy");
        let oset = other.default_policies().clone();
        g.bench_function(format!("1t_10k_warm/watchpost_{name}"), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                black_box(other.try_check_now(&keys[i], &oset, 1))
            })
        });
    }
    let gov = governor();
    for k in &ips {
        let _ = gov.check_key(k);
    }
    g.bench_function("1t_10k_warm/governor", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(gov.check_key(&ips[i]).is_ok())
        })
    });

    // Two threads: elements = decisions by both.
    g.throughput(Throughput::Elements(2));
    let l = Arc::new(ours(1_000_000));
    let gov = Arc::new(governor());
    let keys2: Arc<Vec<RateLimitKey>> = Arc::new(
        (0..2 * WARM_KEYS)
            .map(|i| RateLimitKey::Ip(ip(i)))
            .collect(),
    );
    let ips2: Arc<Vec<IpAddr>> = Arc::new((0..2 * WARM_KEYS).map(ip).collect());
    for (name, shared_key) in [("2t_distinct", false), ("2t_one_key", true)] {
        g.bench_function(format!("{name}/watchpost"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |t, n| {
                    let set = l.default_policies().clone();
                    let base = if shared_key {
                        0
                    } else {
                        t * WARM_KEYS as usize
                    };
                    for j in 0..n as usize {
                        let k = if shared_key {
                            0
                        } else {
                            base + j % WARM_KEYS as usize
                        };
                        black_box(l.try_check_now(&keys2[k], &set, 1));
                    }
                })
            })
        });
        g.bench_function(format!("{name}/governor"), |b| {
            b.iter_custom(|iters| {
                two_threads(iters, |t, n| {
                    let base = if shared_key {
                        0
                    } else {
                        t * WARM_KEYS as usize
                    };
                    for j in 0..n as usize {
                        let k = if shared_key {
                            0
                        } else {
                            base + j % WARM_KEYS as usize
                        };
                        black_box(gov.check_key(&ips2[k]).is_ok());
                    }
                })
            })
        });
    }
    g.finish();
}

/// Runs `work(thread, iters)` on two threads at once; the wall time of both.
fn two_threads(iters: u64, work: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2 {
            let work = &work;
            s.spawn(move || work(t, iters));
        }
    });
    start.elapsed()
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Memory per key at 1,000,000 IP keys and the longest decision while inserting them.
fn memory_and_pauses(_: &mut Criterion) {
    const N: u32 = 1_000_000;
    if std::env::var_os("WATCHPOST_BENCH_SKIP_MEMORY").is_some() {
        // For profiling one criterion benchmark without the million-key phase.
        return;
    }
    let before = rss_bytes();
    let l = ours(N as usize);
    let set = l.default_policies().clone();
    let (mut worst, mut over_1ms) = (Duration::ZERO, 0);
    for i in 0..N {
        let k = RateLimitKey::Ip(ip(i));
        let t = Instant::now();
        black_box(l.try_check_now(&k, &set, 1));
        let took = t.elapsed();
        worst = worst.max(took);
        over_1ms += usize::from(took > Duration::from_millis(1));
    }
    let ours_rss = rss_bytes().saturating_sub(before);
    let store = l.local_store().expect("local store");
    println!(
        "memory/watchpost: {} B per key by RSS delta, {} B per key by table size ({} entries); longest decision {:?} ({} over 1 ms; on a busy machine these include preemption)",
        ours_rss / N as usize,
        store.table_bytes() / N as usize,
        store.len(),
        worst,
        over_1ms
    );
    // A second million rotating keys: eviction at the cap.
    let mut worst = Duration::ZERO;
    for i in N..2 * N {
        let k = RateLimitKey::Ip(ip(i));
        let t = Instant::now();
        black_box(l.try_check_now(&k, &set, 1));
        worst = worst.max(t.elapsed());
    }
    println!(
        "eviction/watchpost: longest decision while rotating past the cap {worst:?}, entries {}",
        store.len()
    );
    drop(l);

    let before = rss_bytes();
    let gov = governor();
    for i in 0..N {
        let _ = black_box(gov.check_key(&ip(i)));
    }
    let gov_rss = rss_bytes().saturating_sub(before);
    println!(
        "memory/governor: {} B per key by RSS delta ({} keys)",
        gov_rss / N as usize,
        gov.len()
    );
}

fn layer_overhead(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("layer");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let bare = Router::new().route("/", get(|| async { "hello" }));
    let limited = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(ours(1_000_000).layer());
    let req = || {
        let mut r = http::Request::get("/")
            .body(Body::empty())
            .expect("request");
        r.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                [192, 0, 2, 1],
                4000,
            ))));
        r
    };
    g.bench_function("overhead/bare", |b| {
        b.to_async(&rt).iter(|| bare.clone().oneshot(req()))
    });
    g.bench_function("overhead/ratelimit", |b| {
        b.to_async(&rt).iter(|| limited.clone().oneshot(req()))
    });
    g.finish();
}

#[cfg(feature = "redis")]
fn redis_path(c: &mut Criterion) {
    use watchpost_ratelimit::RedisConfig;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = std::env::var("WATCHPOST_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let mut cfg = RedisConfig::new(url);
    cfg.key_prefix = "wp-bench:".to_owned();
    cfg.timeout = Duration::from_secs(1);
    let l = RateLimiter::builder()
        .policies([requests_per(u64::from(BIG), Duration::from_secs(60))])
        .redis(cfg)
        .build()
        .expect("valid Redis config");
    let set = l.default_policies().clone();
    let keys: Vec<RateLimitKey> = (0..1000).map(|i| RateLimitKey::Ip(ip(i))).collect();
    let mut lat: Vec<Duration> = rt.block_on(async {
        // Connection setup and the script load are not part of a decision's latency.
        l.connect()
            .await
            .expect("Redis must answer for this benchmark");
        for k in &keys {
            l.check(k, &set, 1).await;
        }
        let mut lat = Vec::with_capacity(5000);
        for i in 0..5000 {
            let t = Instant::now();
            let d = l.check(&keys[i % keys.len()], &set, 1).await;
            assert!(
                d.degraded_mode().is_none(),
                "Redis must answer for this benchmark"
            );
            lat.push(t.elapsed());
        }
        lat
    });
    lat.sort();
    println!(
        "redis/watchpost: p50 {:?}, p99 {:?}, max {:?} over {} decisions",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1],
        lat.len()
    );
    let mut g = c.benchmark_group("redis");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let mut i = 0usize;
    g.bench_function("decision", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % keys.len();
            l.check(&keys[i], &set, 1)
        })
    });
    g.finish();
}

#[cfg(not(feature = "redis"))]
fn redis_path(_: &mut Criterion) {
    println!(
        "redis/watchpost: skipped in this run; run with --features redis to measure the Redis path"
    );
}

criterion_group!(
    benches,
    decisions,
    layer_overhead,
    memory_and_pauses,
    redis_path
);
criterion_main!(benches);
