//! The local store's bounds: a million rotating client IPs stay under the cap.

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
