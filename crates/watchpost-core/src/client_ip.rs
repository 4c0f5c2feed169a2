//! The client-IP policy: which proxies are trusted, and who the client is behind them.
//!
//! The rule: when the TCP peer is not a trusted proxy, the peer is the client and every
//! forwarding header is ignored (a client can write anything there). When the peer is
//! trusted, the forwarding chain is read from `Forwarded` (RFC 7239) if present, else
//! from `X-Forwarded-For`, and walked from the right: the first address that is not a
//! trusted proxy is the client. The leftmost entry is never believed just for being
//! leftmost. When every hop is trusted, the leftmost hop is the client. When an entry
//! cannot be read as an address (`unknown`, an obfuscated identifier), the walk stops
//! and the last address read is the client.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;

/// A trusted-proxy entry that is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an IP address or CIDR block (example: 10.0.0.0/8, 127.0.0.1, ::1)")]
pub struct ClientIpError {
    /// The entry as written.
    pub entry: String,
}

/// The proxies whose forwarding headers are believed. Empty (the default) trusts none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Trusts no proxy: the TCP peer is always the client.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts the given networks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            nets: nets.into_iter().collect(),
        }
    }

    /// Parses a comma- or space-separated list of addresses and CIDR blocks.
    pub fn parse_list(list: &str) -> Result<Self, ClientIpError> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(|entry| {
                IpNet::from_str(entry)
                    .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                    .map_err(|_| ClientIpError {
                        entry: entry.to_owned(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// The trusted networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request from `peer` carrying `headers`, by the rule in the module docs.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all(http::header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let chain: Vec<Option<IpAddr>> = if !forwarded.is_empty() {
            forwarded.iter().flat_map(|v| forwarded_for(v)).collect()
        } else {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|s| parse_node(s.trim()))
                .collect()
        };
        self.walk(peer, &chain)
    }

    fn walk(&self, peer: IpAddr, chain: &[Option<IpAddr>]) -> IpAddr {
        let mut client = peer;
        for hop in chain.iter().rev() {
            match hop {
                Some(ip) => {
                    client = *ip;
                    if !self.is_trusted(*ip) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// The `for=` values of one `Forwarded` header value, in order (`None` for unreadable nodes).
fn forwarded_for(value: &str) -> Vec<Option<IpAddr>> {
    split_outside_quotes(value, ',')
        .into_iter()
        .filter_map(|element| {
            split_outside_quotes(element, ';')
                .into_iter()
                .find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| parse_node(v.trim().trim_matches('"')))
                })
        })
        .collect()
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            c if c == sep && !in_quotes => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// An address, optionally with a port (`1.2.3.4:80`, `[2001:db8::1]:443`), canonicalised.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = IpAddr::from_str(node) {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = SocketAddr::from_str(node) {
        return Some(sa.ip().to_canonical());
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    IpAddr::from_str(inner).ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let p = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(p.client_ip(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        assert_eq!(
            TrustedProxies::none().client_ip(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn rightmost_untrusted_wins() {
        let p = TrustedProxies::parse_list("10.0.0.0/8, 192.168.1.1").unwrap();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 192.168.1.1")]);
        assert_eq!(p.client_ip(ip("10.1.1.1"), &h), ip("198.51.100.7"));
        // Two header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.8"),
        ]);
        assert_eq!(p.client_ip(ip("10.1.1.1"), &h), ip("198.51.100.8"));
    }

    #[test]
    fn all_trusted_gives_leftmost_and_garbage_stops() {
        let p = TrustedProxies::parse_list("10.0.0.0/8").unwrap();
        let h = headers(&[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]);
        assert_eq!(p.client_ip(ip("10.0.0.7"), &h), ip("10.0.0.5"));
        let h = headers(&[("x-forwarded-for", "1.2.3.4, unknown, 10.0.0.6")]);
        assert_eq!(p.client_ip(ip("10.0.0.7"), &h), ip("10.0.0.6"));
    }

    #[test]
    fn forwarded_header_preferred_with_ports_and_ipv6() {
        let p = TrustedProxies::parse_list("127.0.0.1,::1").unwrap();
        let h = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711""#,
            ),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        assert_eq!(p.client_ip(ip("::1"), &h), ip("2001:db8:cafe::17"));
        let h = headers(&[("forwarded", r#"For="192.0.2.61:8080""#)]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("192.0.2.61"));
    }

    #[test]
    fn mapped_addresses_are_canonical() {
        let p = TrustedProxies::parse_list("127.0.0.0/8").unwrap();
        let h = headers(&[("x-forwarded-for", "::ffff:198.51.100.1")]);
        assert_eq!(p.client_ip(ip("::ffff:127.0.0.1"), &h), ip("198.51.100.1"));
    }

    #[test]
    fn bad_list_entry_is_named() {
        let e = TrustedProxies::parse_list("10.0.0.0/8, nope").unwrap_err();
        assert_eq!(e.entry, "nope");
    }
}
