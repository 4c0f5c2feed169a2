//! Redaction and bounds: secret-named fields become `hmac-sha256:<hex>`, big payloads are truncated.
//!
//! A field is secret when its name, lowercased with everything but letters and digits
//! removed, contains one of the configured words (`password`, `token`, `secret`,
//! `authorization`, `apikey` by default). Its value is replaced by the HMAC-SHA-256 of
//! the value under the configured key, so an operator holding a known value can still
//! find the events that carried it (the value itself is never stored). Payloads larger
//! than [`Redactor::max_payload_bytes`] are replaced by a marker object with a preview.

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::event::canonical_string;

/// Default secret words.
pub const DEFAULT_SECRET_FIELDS: &[&str] =
    &["password", "token", "secret", "authorization", "api_key"];

/// Largest payload kept whole: 64 KiB.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;

/// Largest event accepted: 1 MiB.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Bytes of the original payload kept in a truncation marker.
const PREVIEW_BYTES: usize = 1024;

/// Applies the redaction and size rules.
#[derive(Clone)]
pub struct Redactor {
    key: Vec<u8>,
    words: Vec<String>,
    /// Payloads whose JSON is longer than this are truncated.
    pub max_payload_bytes: usize,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("key", &"<redacted>")
            .field("words", &self.words)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .finish()
    }
}

fn squash(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Counts the bytes written through it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value`'s compact JSON, without building it; `usize::MAX` if it cannot be written.
pub(crate) fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut n = ByteCount(0);
    match serde_json::to_writer(&mut n, value) {
        Ok(()) => n.0,
        Err(_) => usize::MAX,
    }
}

impl Redactor {
    /// A redactor with the HMAC `key` and the default secret words.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Self::with_fields(key, DEFAULT_SECRET_FIELDS.iter().copied())
    }

    /// A redactor with the HMAC `key` and these secret words.
    pub fn with_fields<'a>(
        key: impl Into<Vec<u8>>,
        fields: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        Self {
            key: key.into(),
            words: fields
                .into_iter()
                .map(squash)
                .filter(|w| !w.is_empty())
                .collect(),
            max_payload_bytes: MAX_PAYLOAD_BYTES,
        }
    }

    /// Whether a field with this name is secret.
    pub fn is_secret(&self, name: &str) -> bool {
        let n = squash(name);
        self.words.iter().any(|w| n.contains(w.as_str()))
    }

    /// `hmac-sha256:<hex>` of a value (strings by their text, anything else by its canonical JSON).
    pub fn fingerprint(&self, value: &Value) -> String {
        let text = match value {
            Value::String(s) => s.clone(),
            other => canonical_string(other),
        };
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| {
            <Hmac<Sha256> as Mac>::new_from_slice(b"watchpost").expect("fixed key")
        });
        mac.update(text.as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Redacts secret fields in place, at every depth.
    pub fn redact(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if self.is_secret(k) {
                        if !v.is_null() {
                            *v = Value::String(self.fingerprint(v));
                        }
                    } else {
                        self.redact(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact(v)),
            _ => {}
        }
    }

    /// Redacts, then truncates the payload when its JSON is over the limit.
    pub fn apply(&self, payload: &mut Value) {
        self.redact(payload);
        // Compact JSON is as long as the canonical form (only the key order differs), and
        // counting it allocates nothing; the text itself is only needed for a preview.
        if json_len(payload) > self.max_payload_bytes {
            let text = canonical_string(payload);
            let mut cut = PREVIEW_BYTES.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            let mut marker = Map::new();
            marker.insert("$truncated".into(), Value::Bool(true));
            marker.insert("originalBytes".into(), Value::from(text.len() as u64));
            marker.insert(
                "limitBytes".into(),
                Value::from(self.max_payload_bytes as u64),
            );
            marker.insert("preview".into(), Value::String(text[..cut].to_owned()));
            *payload = Value::Object(marker);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_become_matchable_fingerprints() {
        let r = Redactor::new(b"k".to_vec());
        let mut v = json!({"user": "ann", "Password": "hunter2", "nested": [{"accessToken": 42}], "x-api-key": "abc", "apiKey": null});
        r.redact(&mut v);
        assert_eq!(v["user"], "ann");
        assert_eq!(v["Password"], r.fingerprint(&json!("hunter2")));
        assert!(
            v["nested"][0]["accessToken"]
                .as_str()
                .unwrap()
                .starts_with("hmac-sha256:")
        );
        assert!(v["x-api-key"].as_str().unwrap().starts_with("hmac-sha256:"));
        assert!(v["apiKey"].is_null());
        assert_ne!(
            r.fingerprint(&json!("a")),
            Redactor::new(b"other".to_vec()).fingerprint(&json!("a"))
        );
    }

    #[test]
    fn configurable_words() {
        let r = Redactor::with_fields(b"k".to_vec(), ["ssn"]);
        assert!(r.is_secret("customer_SSN"));
        assert!(!r.is_secret("password"));
    }

    #[test]
    fn big_payloads_are_truncated_with_a_marker() {
        let r = Redactor::new(b"k".to_vec());
        let mut v = json!({"blob": "é".repeat(40_000)});
        r.apply(&mut v);
        assert_eq!(v["$truncated"], true);
        assert!(v["originalBytes"].as_u64().unwrap() > 64 * 1024);
        assert!(v["preview"].as_str().unwrap().len() <= 1024);
        let mut small = json!({"a": 1});
        r.apply(&mut small);
        assert_eq!(small, json!({"a": 1}));
    }
}
