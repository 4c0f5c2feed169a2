//! [`RequestContext`]: what every layer and handler may know about the request in hand.
//!
//! The correlation layer creates one per request and puts it into the request
//! extensions; later layers fill in what they learn (the server's authentication adds
//! the [`Principal`], the router adds the route template). Crates read it
//! from the extensions; none of them needs the crate that created it.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::id::{CorrelationId, RequestId};
use crate::principal::Principal;

/// A W3C trace id: 16 bytes, never all zero when valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId(pub [u8; 16]);

/// A W3C span (parent) id: 8 bytes, never all zero when valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId(pub [u8; 8]);

/// Lowercase hex of up to 16 bytes in `buf`, without a formatter (ids are written on every
/// logged request).
fn encode_hex<'a>(bytes: &[u8], buf: &'a mut [u8; 32]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let n = bytes.len().min(16);
    for (i, b) in bytes.iter().take(n).enumerate() {
        buf[2 * i] = DIGITS[usize::from(b >> 4)];
        buf[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    std::str::from_utf8(&buf[..2 * n]).unwrap_or_default()
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_digit(chunk[0])?;
        let lo = hex_digit(chunk[1])?;
        out[i] = (hi << 4) | lo;
    }
    Some(out)
}

/// Lowercase hex only, as W3C Trace Context requires.
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

impl TraceId {
    /// The 32 lowercase hex digits, written into `buf` (what `Display` writes, without a formatter).
    pub fn encode_hex<'a>(&self, buf: &'a mut [u8; 32]) -> &'a str {
        encode_hex(&self.0, buf)
    }

    /// Parses 32 lowercase hex digits; refuses the all-zero id.
    pub fn from_hex(s: &str) -> Option<Self> {
        parse_hex::<16>(s).filter(|b| b != &[0; 16]).map(Self)
    }
}

impl SpanId {
    /// The 16 lowercase hex digits, written into `buf` (what `Display` writes, without a formatter).
    pub fn encode_hex<'a>(&self, buf: &'a mut [u8; 32]) -> &'a str {
        encode_hex(&self.0, buf)
    }

    /// Parses 16 lowercase hex digits; refuses the all-zero id.
    pub fn from_hex(s: &str) -> Option<Self> {
        parse_hex::<8>(s).filter(|b| b != &[0; 8]).map(Self)
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode_hex(&mut [0; 32]))
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode_hex(&mut [0; 32]))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for SpanId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Everything Watchpost knows about the request in hand.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct RequestContext {
    /// This request's id.
    pub request_id: RequestId,
    /// The business operation's id; equals the request id when none was received.
    pub correlation_id: CorrelationId,
    /// The trace this request belongs to, when tracing knows one.
    pub trace_id: Option<TraceId>,
    /// The server span of this request, when tracing knows one.
    pub span_id: Option<SpanId>,
    /// Whether the trace is sampled (exported).
    pub sampled: bool,
    /// Who made the request, once authentication has run; `None` for anonymous requests.
    pub principal: Option<Principal>,
    /// The client address after the trusted-proxy policy.
    pub client_ip: Option<IpAddr>,
    /// The matched route template (`/incidents/{id}`), never the raw path; shared text, so
    /// cloning the context copies a pointer.
    pub route: Option<Arc<str>>,
}

impl RequestContext {
    /// A context with fresh ids and nothing else known.
    pub fn new() -> Self {
        let request_id = RequestId::generate();
        Self::with_ids(request_id.clone(), CorrelationId::from(&request_id))
    }

    /// A context with the given ids and nothing else known.
    pub fn with_ids(request_id: RequestId, correlation_id: CorrelationId) -> Self {
        Self {
            request_id,
            correlation_id,
            trace_id: None,
            span_id: None,
            sampled: false,
            principal: None,
            client_ip: None,
            route: None,
        }
    }

    /// Sets the trace and span ids and the sampled flag.
    #[must_use]
    pub fn with_trace(mut self, trace_id: TraceId, span_id: SpanId, sampled: bool) -> Self {
        self.trace_id = Some(trace_id);
        self.span_id = Some(span_id);
        self.sampled = sampled;
        self
    }

    /// Sets the client address.
    #[must_use]
    pub fn with_client_ip(mut self, ip: IpAddr) -> Self {
        self.client_ip = Some(ip);
        self
    }

    /// Sets the principal.
    #[must_use]
    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.principal = Some(principal);
        self
    }

    /// Sets the route template.
    #[must_use]
    pub fn with_route(mut self, route: impl Into<Arc<str>>) -> Self {
        self.route = Some(route.into());
        self
    }
}

impl Default for RequestContext {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_round_trip_and_refuse_bad_input() {
        let t = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        assert_eq!(t.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(TraceId::from_hex("00000000000000000000000000000000").is_none());
        assert!(TraceId::from_hex("4BF92F3577B34DA6A3CE929D0E0E4736").is_none());
        assert!(TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e473").is_none());
        assert!(SpanId::from_hex("00f067aa0ba902b7").is_some());
        let s = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        assert_eq!(s.to_string(), "00f067aa0ba902b7");
        assert_eq!(s.encode_hex(&mut [0; 32]), "00f067aa0ba902b7");
        assert_eq!(
            t.encode_hex(&mut [0; 32]),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(SpanId::from_hex("0000000000000000").is_none());
    }

    #[test]
    fn new_context_correlates_to_itself() {
        let c = RequestContext::new();
        assert_eq!(c.request_id.as_str(), c.correlation_id.as_str());
    }
}
