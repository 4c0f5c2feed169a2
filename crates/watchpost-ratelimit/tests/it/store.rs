//! The local store's bounds (a million rotating client IPs stay under the cap) and its exactness
//! when several threads decide for the same keys at once.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use watchpost_ratelimit::{MonotonicClock, RateLimitKey, RateLimiter, requests_per};

#[test]
fn rotating_ips_are_bounded_by_the_cap() {
    let clock = MonotonicClock::manual();
    let limiter = RateLimiter::builder()
        .policies([requests_per(10, Duration::from_secs(60))])
        .max_keys(100_000)
        .clock(clock.clone())
        .build()
        .unwrap();
    let set = limiter.default_policies().clone();
    let store = limiter.local_store().unwrap();
    for i in 0..1_000_000u32 {
        let key = RateLimitKey::ip(IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i)), 56);
        assert!(limiter.try_check_now(&key, &set, 1).unwrap().allowed());
        if i % 1000 == 0 {
            clock.advance(Duration::from_millis(10));
        }
    }
    assert!(
        store.len() <= store.max_keys(),
        "{} > {}",
        store.len(),
        store.max_keys()
    );
    // 24-byte slots at most ¾ full, plus rounding to a power of two: under 64 B per entry.
    assert!(
        store.table_bytes() <= 64 * store.max_keys(),
        "{} bytes for {} keys",
        store.table_bytes(),
        store.max_keys()
    );
    // A hot key keeps its count while attackers rotate (it is the most recently active).
    let hot = RateLimitKey::ApiKey("hot".into());
    for _ in 0..10 {
        assert!(limiter.try_check_now(&hot, &set, 1).unwrap().allowed());
    }
    for i in 0..200_000u32 {
        let key = RateLimitKey::ip(IpAddr::V4(Ipv4Addr::from(0x0B00_0000 + i)), 56);
        limiter.try_check_now(&key, &set, 1);
        if i % 20_000 == 0 {
            // The hot key stays active.
            clock.advance(Duration::from_millis(1));
            assert!(!limiter.try_check_now(&hot, &set, 1).unwrap().allowed());
        }
    }
}

/// Four threads race on a few keys within one window: every key admits exactly its limit (no
/// lost update, no count past the limit), for a one-policy and a two-policy set, and the next
/// window admits again.
#[test]
fn racing_threads_admit_exactly_the_limit() {
    let clock = MonotonicClock::manual();
    clock.advance(Duration::from_millis(1));
    let one = RateLimiter::builder()
        .policies([requests_per(5_000, Duration::from_secs(60))])
        .clock(clock.clone())
        .build()
        .unwrap();
    let two = RateLimiter::builder()
        .policies([
            requests_per(5_000, Duration::from_secs(60)),
            requests_per(7_000, Duration::from_secs(3_600)),
        ])
        .clock(clock.clone())
        .build()
        .unwrap();
    let keys: Vec<RateLimitKey> = (0..3)
        .map(|i| RateLimitKey::ApiKey(format!("k{i}").into()))
        .collect();
    for limiter in [&one, &two] {
        let set = limiter.default_policies().clone();
        let allowed: Vec<Vec<u64>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut allowed = vec![0u64; keys.len()];
                        for round in 0..6_000 {
                            for (k, key) in keys.iter().enumerate() {
                                let cost = if round % 7 == 0 { 3 } else { 1 };
                                if limiter.try_check_now(key, &set, cost).unwrap().allowed() {
                                    allowed[k] += cost;
                                }
                            }
                        }
                        allowed
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        for k in 0..keys.len() {
            let total: u64 = allowed.iter().map(|a| a[k]).sum();
            // Costs of 1 and 3: the window fills to the limit or to within one costly request of it.
            assert!(
                (4_998..=5_000).contains(&total),
                "key {k}: {total} units admitted against a limit of 5,000"
            );
            let last = limiter.try_check_now(&keys[k], &set, 1).unwrap();
            assert_eq!(
                last.allowed(),
                total < 5_000,
                "key {k}: a unit of room left is used"
            );
        }
    }
    // The next window: half the previous count still weighs in at its middle.
    clock.advance(Duration::from_secs(90));
    let set = one.default_policies().clone();
    assert!(one.try_check_now(&keys[0], &set, 1).unwrap().allowed());
}
