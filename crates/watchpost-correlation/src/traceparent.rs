//! The strict W3C Trace Context parser: `traceparent` and `tracestate` exactly as the specification writes them.
//!
//! A `traceparent` is accepted only when it arrives as one header value shaped
//! `VV-TTTTTTTTTTTTTTTTTTTTTTTTTTTTTTTT-PPPPPPPPPPPPPPPP-FF`: lowercase hex of exact
//! widths, a version other than `ff`, a trace id and a parent id that are not all
//! zero. Version `00` must end after the flags; a later version may carry more
//! fields after a `-`, which are ignored as the specification asks. Anything else is
//! refused, and the request starts a new root trace without `tracestate`.

use http::{HeaderMap, HeaderName};
use watchpost_core::{SpanId, TraceId};

/// The `sampled` trace flag.
pub const FLAG_SAMPLED: u8 = 0x01;
/// The `random` trace flag (W3C Trace Context level 2): the trace id's right 7 bytes are random.
pub const FLAG_RANDOM: u8 = 0x02;

/// The `traceparent` header. A constant name is looked up by its hash alone; a `&str` name is
/// validated and lowercased first, on every request.
pub(crate) const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// The W3C `baggage` header.
pub(crate) const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// Length of a version `00` `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The version byte (never `0xff`).
    pub version: u8,
    /// The trace id (never all zero).
    pub trace_id: TraceId,
    /// The caller's span id (never all zero).
    pub parent_id: SpanId,
    /// The trace flags that Watchpost keeps: [`FLAG_SAMPLED`] and [`FLAG_RANDOM`].
    pub flags: u8,
}

impl TraceParent {
    /// Whether the caller sampled this trace.
    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Parses one `traceparent` value strictly; `None` when it is not valid.
    pub fn parse(value: &str) -> Option<Self> {
        let b = value.as_bytes();
        if b.len() < TRACEPARENT_LEN {
            return None;
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        if version == 0xff {
            return None;
        }
        // Version 00 ends after the flags; later versions may only append `-`-separated fields.
        if b.len() > TRACEPARENT_LEN && (version == 0 || b[TRACEPARENT_LEN] != b'-') {
            return None;
        }
        let trace_id = TraceId::from_hex(&value[3..35])?;
        let parent_id = SpanId::from_hex(&value[36..52])?;
        let flags = hex_byte(&b[53..55])?;
        Some(Self {
            version,
            trace_id,
            parent_id,
            flags: flags & (FLAG_SAMPLED | FLAG_RANDOM),
        })
    }

    /// Reads `traceparent` from `headers`: exactly one value, valid; otherwise `None`.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        Self::parse(first.to_str().ok()?)
    }
}

/// Formats a version `00` `traceparent` for an outgoing request or a response.
pub fn format_traceparent(trace_id: TraceId, span_id: SpanId, flags: u8) -> String {
    format!(
        "00-{trace_id}-{span_id}-{:02x}",
        flags & (FLAG_SAMPLED | FLAG_RANDOM)
    )
}

/// Reads `tracestate` (all header values joined with `,`, as the specification allows), keeping it
/// only when every list member is well formed and there are at most 32 of them.
pub fn tracestate_from_headers(headers: &HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for value in headers.get_all(TRACESTATE) {
        let text = value.to_str().ok()?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    let mut members = 0usize;
    for member in joined.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !valid_tracestate_key(key) || !valid_tracestate_value(value) {
            return None;
        }
        members += 1;
    }
    (members > 0 && members <= 32).then_some(joined)
}

fn valid_tracestate_key(key: &str) -> bool {
    let simple = |s: &str, max: usize| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= max
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter().all(|c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'*' | b'/')
            })
    };
    match key.split_once('@') {
        None => simple(key, 256),
        Some((tenant, system)) => simple(tenant, 241) && simple(system, 14),
    }
}

fn valid_tracestate_value(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.last() != Some(&b' ')
        && b.iter()
            .all(|c| (0x20..=0x7e).contains(c) && *c != b',' && *c != b'=')
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some((digit(two[0])? << 4) | digit(two[1])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn accepts_the_specification_example() {
        let tp = TraceParent::parse(VALID).expect("valid");
        assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(tp.sampled());
        assert_eq!(
            format_traceparent(tp.trace_id, tp.parent_id, tp.flags),
            VALID
        );
    }

    #[test]
    fn refuses_what_lenient_propagators_accept() {
        for bad in [
            "00-1-1-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn later_versions_may_append_fields() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-the-future-holds";
        let tp = TraceParent::parse(v).expect("future versions parse");
        assert_eq!(tp.flags, FLAG_SAMPLED | FLAG_RANDOM);
        assert!(
            TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x")
                .is_none()
        );
    }

    #[test]
    fn two_header_values_are_refused() {
        let mut h = HeaderMap::new();
        h.append("traceparent", VALID.parse().unwrap());
        assert!(TraceParent::from_headers(&h).is_some());
        h.append("traceparent", VALID.parse().unwrap());
        assert!(TraceParent::from_headers(&h).is_none());
    }

    #[test]
    fn tracestate_is_validated() {
        let mut h = HeaderMap::new();
        h.append(
            "tracestate",
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".parse().unwrap(),
        );
        assert_eq!(
            tracestate_from_headers(&h).as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        h.append("tracestate", "vendor@sys=x".parse().unwrap());
        assert!(tracestate_from_headers(&h).is_some());
        let mut bad = HeaderMap::new();
        bad.append("tracestate", "Upper=1".parse().unwrap());
        assert!(tracestate_from_headers(&bad).is_none());
    }

    fn hex(len: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(b"0123456789abcdef".to_vec()), len)
            .prop_map(|v| String::from_utf8(v).unwrap_or_default())
    }

    proptest! {
        #[test]
        fn well_formed_values_round_trip(t in hex(32), p in hex(16), f in 0u8..=255) {
            let value = format!("00-{t}-{p}-{f:02x}");
            let parsed = TraceParent::parse(&value);
            let zero_t = t.bytes().all(|c| c == b'0');
            let zero_p = p.bytes().all(|c| c == b'0');
            prop_assert_eq!(parsed.is_some(), !zero_t && !zero_p);
            if let Some(tp) = parsed {
                prop_assert_eq!(tp.trace_id.to_string(), t);
                prop_assert_eq!(tp.parent_id.to_string(), p);
                prop_assert_eq!(tp.flags, f & 3);
            }
        }

        #[test]
        fn any_accepted_value_has_the_strict_shape(s in "\\PC{0,80}") {
            if let Some(tp) = TraceParent::parse(&s) {
                let b = s.as_bytes();
                prop_assert!(b.len() >= 55);
                prop_assert!(s[..55].bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c) || c == b'-'));
                prop_assert_ne!(tp.version, 0xff);
            }
        }

        #[test]
        fn single_character_changes_to_uppercase_or_junk_are_refused(
            pos in 0usize..55,
            c in proptest::sample::select(b"GXZ\r\n\t :ABCDEF".to_vec()),
        ) {
            let mut b = VALID.as_bytes().to_vec();
            b[pos] = c;
            let s = String::from_utf8(b).unwrap_or_default();
            prop_assert!(TraceParent::parse(&s).is_none(), "{:?}", s);
        }

        #[test]
        fn truncations_and_extensions_of_version_00_are_refused(cut in 0usize..55, tail in "[-a-z0-9]{1,10}") {
            prop_assert!(TraceParent::parse(&VALID[..cut]).is_none());
            let extended = format!("{VALID}{tail}");
            prop_assert!(TraceParent::parse(&extended).is_none());
        }
    }
}
