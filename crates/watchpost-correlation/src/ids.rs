//! Reading `X-Request-ID` and `X-Correlation-ID` from a request: accepted only when safe to log and echo.
//!
//! A received id is kept only when the header carries exactly one value that passes
//! [`watchpost_core::id::is_valid_id`] (1 to 128 characters from `[A-Za-z0-9._:-]`).
//! Anything else is refused whole (never truncated, never echoed, never logged raw), and
//! a fresh time-sortable id is used instead.

use http::{HeaderMap, HeaderName};
use watchpost_core::id::is_valid_id;

/// The request id header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
/// The correlation id header.
pub const CORRELATION_ID_HEADER: HeaderName = HeaderName::from_static("x-correlation-id");

/// What a request said in one id header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceivedId {
    /// The header was absent.
    Absent,
    /// The header held exactly one valid id.
    Valid(String),
    /// The header was present but refused (several values, empty, too long, bad characters, not text).
    Rejected,
}

/// Reads one id header by the rule in the module docs.
pub fn received_id(headers: &HeaderMap, name: &HeaderName) -> ReceivedId {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return ReceivedId::Absent;
    };
    if values.next().is_some() {
        return ReceivedId::Rejected;
    }
    match first.to_str() {
        Ok(text) if is_valid_id(text) => ReceivedId::Valid(text.to_owned()),
        _ => ReceivedId::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn one(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(value) {
            h.append(REQUEST_ID_HEADER, v);
        }
        h
    }

    #[test]
    fn absent_valid_and_rejected() {
        assert_eq!(
            received_id(&HeaderMap::new(), &REQUEST_ID_HEADER),
            ReceivedId::Absent
        );
        assert_eq!(
            received_id(&one(b"svc-1:req.42_x"), &REQUEST_ID_HEADER),
            ReceivedId::Valid("svc-1:req.42_x".into())
        );
        assert_eq!(
            received_id(&one(b""), &REQUEST_ID_HEADER),
            ReceivedId::Rejected
        );
        assert_eq!(
            received_id(&one("é".as_bytes()), &REQUEST_ID_HEADER),
            ReceivedId::Rejected
        );
        assert_eq!(
            received_id(&one("x".repeat(129).as_bytes()), &REQUEST_ID_HEADER),
            ReceivedId::Rejected
        );
        let mut two = one(b"a");
        two.append(REQUEST_ID_HEADER, HeaderValue::from_static("b"));
        assert_eq!(received_id(&two, &REQUEST_ID_HEADER), ReceivedId::Rejected);
    }

    proptest! {
        #[test]
        fn accepted_ids_are_always_safe(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let h = one(&bytes);
            if let ReceivedId::Valid(id) = received_id(&h, &REQUEST_ID_HEADER) {
                prop_assert!(!id.is_empty() && id.len() <= 128);
                prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:".contains(&b)));
                prop_assert_eq!(id.as_bytes(), &bytes[..]);
            }
        }

        #[test]
        fn injection_attempts_are_refused(
            prefix in "[A-Za-z0-9]{1,20}",
            evil in proptest::sample::select(vec!["\r\n", "\n", "\r", " ", "\t", "\"", "é", "\u{0}", "%0d%0a", ",", ";"]),
            suffix in "[A-Za-z0-9]{0,20}",
        ) {
            let value = format!("{prefix}{evil}{suffix}");
            let h = one(value.as_bytes());
            prop_assert!(!matches!(received_id(&h, &REQUEST_ID_HEADER), ReceivedId::Valid(_)));
        }

        #[test]
        fn lengths_over_128_are_refused_not_truncated(len in 129usize..400) {
            let h = one("a".repeat(len).as_bytes());
            prop_assert_eq!(received_id(&h, &REQUEST_ID_HEADER), ReceivedId::Rejected);
        }

        #[test]
        fn two_valid_values_are_refused(a in "[A-Za-z0-9]{1,16}", b in "[A-Za-z0-9]{1,16}") {
            let mut h = one(a.as_bytes());
            h.append(REQUEST_ID_HEADER, HeaderValue::from_str(&b).unwrap_or(HeaderValue::from_static("x")));
            prop_assert_eq!(received_id(&h, &REQUEST_ID_HEADER), ReceivedId::Rejected);
        }
    }
}
