//! The per-stream hash chain: `hash = SHA-256(prevHash bytes || canonical JSON of the event)`.

use sha2::{Digest, Sha256};

use crate::event::{AuditEvent, GENESIS_HASH};

/// Computes the hash an event should carry, given its `prev_hash` and content.
pub fn compute_hash(event: &AuditEvent) -> String {
    let mut prev = [0u8; 32];
    // A malformed prev_hash (tampering) hashes as zeros; the link check reports it anyway.
    let _ = hex::decode_to_slice(&event.prev_hash, &mut prev);
    let mut h = Sha256::new();
    h.update(prev);
    h.update(event.canonical_bytes());
    hex::encode(h.finalize())
}

/// The head of one writer stream; seals events in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The stream name.
    pub stream: String,
    /// The last sequence number used (0 before the first event).
    pub seq: i64,
    /// The last event's hash (or the genesis hash).
    pub hash: String,
}

impl ChainHead {
    /// A new, empty stream.
    pub fn genesis(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    /// Assigns stream, seq, prevHash and hash to `event` and advances the head.
    pub fn seal(&mut self, event: &mut AuditEvent) {
        event.stream.clone_from(&self.stream);
        event.seq = self.seq + 1;
        event.prev_hash.clone_from(&self.hash);
        event.hash = compute_hash(event);
        self.seq = event.seq;
        self.hash.clone_from(&event.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, NewEvent};

    #[test]
    fn seal_links_events() {
        let now = chrono::Utc::now();
        let mut head = ChainHead::genesis("s");
        let mut a = NewEvent::new(Action::Create).into_event(now);
        let mut b = NewEvent::new(Action::Delete).into_event(now);
        head.seal(&mut a);
        head.seal(&mut b);
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.prev_hash, GENESIS_HASH);
        assert_eq!(b.prev_hash, a.hash);
        assert_eq!(compute_hash(&b), b.hash);
        b.resource_id = Some("changed".into());
        assert_ne!(compute_hash(&b), b.hash);
    }
}
