//! [`RateLimitKey`]: who a request is counted against, and the 64-bit keyed hash the local
//! store files it under.
//!
//! The default rule: the principal's API key id, else its tenant, else the client IP
//! (after the trusted-proxy policy), with IPv6 addresses grouped by prefix (/56 by
//! default, since one subscriber usually holds a whole /56 and rotating addresses inside
//! it must not multiply the limit). Library users can replace the rule with a function.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// An API key, by its id (key ids are not secrets); shared with the request's principal.
    ApiKey(Arc<str>),
    /// A tenant; shared with the request's principal.
    Tenant(Arc<str>),
    /// A client address; IPv6 already masked to its group prefix.
    Ip(IpAddr),
    /// A key from a custom key function.
    Custom(String),
}

impl RateLimitKey {
    /// The client-address key for `ip`, IPv6 masked to the first `ipv6_prefix` bits.
    pub fn ip(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => RateLimitKey::Ip(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let prefix = u32::from(ipv6_prefix.min(128));
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - prefix)
                };
                RateLimitKey::Ip(IpAddr::V6((bits & mask).into()))
            }
        }
    }

    /// A stable text form (`key:<id>`, `tenant:<id>`, `ip:<addr>`, `custom:<text>`), used as the Redis key.
    pub fn to_store_string(&self) -> String {
        self.to_string()
    }

    /// The kind, for logs: `key`, `tenant`, `ip` or `custom`.
    pub fn kind(&self) -> &'static str {
        match self {
            RateLimitKey::ApiKey(_) => "key",
            RateLimitKey::Tenant(_) => "tenant",
            RateLimitKey::Ip(_) => "ip",
            RateLimitKey::Custom(_) => "custom",
        }
    }
}

impl fmt::Display for RateLimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateLimitKey::ApiKey(id) => write!(f, "key:{id}"),
            RateLimitKey::Tenant(id) => write!(f, "tenant:{id}"),
            RateLimitKey::Ip(ip) => write!(f, "ip:{ip}"),
            RateLimitKey::Custom(s) => write!(f, "custom:{s}"),
        }
    }
}

/// A keyed 64-bit hash (seeded per process, so clients cannot aim at collisions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHasher {
    seed: u64,
}

const M: u64 = 0x9E37_79B9_7F4A_7C15;

/// The murmur3 64-bit finaliser: a bijection that spreads every input bit.
#[inline]
pub(crate) fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[inline]
fn mix(a: u64, b: u64) -> u64 {
    let r = u128::from(a ^ M).wrapping_mul(u128::from(b ^ 0xA076_1D64_78BD_642F));
    (r as u64) ^ ((r >> 64) as u64)
}

impl KeyHasher {
    pub(crate) fn new(seed: u64) -> Self {
        Self { seed }
    }

    pub(crate) fn random() -> Self {
        Self::new(rand::random())
    }

    #[inline]
    fn bytes(&self, tag: u64, data: &[u8]) -> u64 {
        let mut h = mix(self.seed ^ tag, data.len() as u64);
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = mix(h, u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            h = mix(h, u64::from_le_bytes(w));
        }
        fmix64(h)
    }

    /// The hash of `key`.
    #[inline]
    pub(crate) fn hash(&self, key: &RateLimitKey) -> u64 {
        match key {
            RateLimitKey::ApiKey(s) => self.bytes(1, s.as_bytes()),
            RateLimitKey::Tenant(s) => self.bytes(2, s.as_bytes()),
            RateLimitKey::Custom(s) => self.bytes(3, s.as_bytes()),
            // One seeded folded multiply spreads a fixed-size address well enough: the
            // store mixes again (fmix64) per policy before picking a slot.
            RateLimitKey::Ip(IpAddr::V4(v4)) => mix(self.seed ^ 4, u64::from(u32::from(*v4))),
            RateLimitKey::Ip(IpAddr::V6(v6)) => {
                let b = u128::from(*v6);
                mix(mix(self.seed ^ 6, (b >> 64) as u64), b as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_grouped_by_prefix() {
        let a = RateLimitKey::ip("2001:db8:aa:bb01::1".parse().unwrap(), 56);
        let b = RateLimitKey::ip("2001:db8:aa:bbff:1234::9".parse().unwrap(), 56);
        let c = RateLimitKey::ip("2001:db8:aa:bc00::1".parse().unwrap(), 56);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "ip:2001:db8:aa:bb00::");
        let mapped = RateLimitKey::ip("::ffff:198.51.100.4".parse().unwrap(), 56);
        assert_eq!(mapped.to_string(), "ip:198.51.100.4");
    }

    #[test]
    fn kinds_do_not_collide() {
        let h = KeyHasher::new(7);
        assert_ne!(
            h.hash(&RateLimitKey::ApiKey("x".into())),
            h.hash(&RateLimitKey::Tenant("x".into()))
        );
        assert_ne!(
            h.hash(&RateLimitKey::Custom("abcdefghi".into())),
            h.hash(&RateLimitKey::Custom("abcdefghj".into()))
        );
    }
}
