//! Time-sortable request and correlation ids, and the validator for ids received from clients.
//!
//! Generated ids are UUIDv7 in their hyphenated form: 36 characters, sortable by
//! creation time, unique without coordination between replicas. Ids received from a
//! client are accepted only when [`is_valid_id`] says so, which keeps them safe to
//! log and to echo in headers (no control characters, no separators, bounded length).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest id accepted from a client, in bytes (all accepted characters are ASCII).
pub const MAX_ID_LEN: usize = 128;

/// Whether `value` may be used as a request or correlation id: 1 to 128 characters from `[A-Za-z0-9._:-]`.
pub fn is_valid_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Why a received id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// The value was empty.
    #[error("id is empty")]
    Empty,
    /// The value was longer than [`MAX_ID_LEN`].
    #[error("id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// The value held a character outside `[A-Za-z0-9._:-]`.
    #[error("id holds a character outside [A-Za-z0-9._:-]")]
    BadCharacter,
}

fn check(value: &str) -> Result<(), InvalidId> {
    if value.is_empty() {
        Err(InvalidId::Empty)
    } else if value.len() > MAX_ID_LEN {
        Err(InvalidId::TooLong)
    } else if !is_valid_id(value) {
        Err(InvalidId::BadCharacter)
    } else {
        Ok(())
    }
}

/// Hands a new UUIDv7, hyphenated and lowercase, to `f` as text on the stack.
fn with_new_id<T>(f: impl FnOnce(&str) -> T) -> T {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    f(uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf))
}

/// A new time-sortable id (UUIDv7, hyphenated, lowercase).
pub fn generate() -> String {
    with_new_id(str::to_owned)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// The text is shared: cloning the id (each layer that keeps the request context does)
        /// copies a pointer, not the text.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// A new time-sortable id (UUIDv7).
            pub fn generate() -> Self {
                Self(with_new_id(|id| Arc::from(id)))
            }

            /// Accepts `value` when it passes [`is_valid_id`].
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                check(value)?;
                Ok(Self(Arc::from(value)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                check(&value)?;
                Ok(Self(Arc::from(value)))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0.as_ref().to_owned()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The id of one HTTP request, echoed in `X-Request-ID` and in every problem body.
    RequestId
);
id_type!(
    /// The id that ties together the requests of one business operation across services (`X-Correlation-ID`).
    CorrelationId
);

impl From<&RequestId> for CorrelationId {
    /// A request that brought no correlation id starts one equal to its request id.
    fn from(value: &RequestId) -> Self {
        Self(value.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_valid_and_sortable() {
        let a = RequestId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = RequestId::generate();
        assert!(is_valid_id(a.as_str()));
        assert_eq!(a.as_str().len(), 36);
        assert!(a < b, "{a} should sort before {b}");
    }

    #[test]
    fn validator_bounds() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id(&"x".repeat(128)));
        assert_eq!(RequestId::parse(&"x".repeat(129)), Err(InvalidId::TooLong));
        assert_eq!(RequestId::parse(""), Err(InvalidId::Empty));
        assert_eq!(RequestId::parse("a\r\nb"), Err(InvalidId::BadCharacter));
        assert_eq!(RequestId::parse("é"), Err(InvalidId::BadCharacter));
        assert_eq!(RequestId::parse("a b"), Err(InvalidId::BadCharacter));
        assert!(RequestId::parse("svc-1:req.42_x").is_ok());
    }
}
