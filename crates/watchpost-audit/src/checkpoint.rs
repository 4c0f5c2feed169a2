//! Signed checkpoints: Ed25519 over a stream's sequence range, its head hash and the previous checkpoint's signature.
//!
//! The signing key is a 32-byte Ed25519 seed, configured as 64 hex characters or kept in a
//! file under the data directory (generated on first start when absent, mode 0600).

use std::path::Path;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{AuditError, Result};
use crate::event::{canonical_string, ts};

/// One signed checkpoint of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// The stream.
    pub stream: String,
    /// 1 for the stream's first checkpoint, then +1.
    pub number: i64,
    /// First sequence number covered (previous `to_seq + 1`).
    pub from_seq: i64,
    /// Last sequence number covered; `from_seq - 1` for an idle checkpoint that covers nothing new.
    pub to_seq: i64,
    /// The hash of event `to_seq` (the genesis hash when the stream is empty).
    pub head_hash: String,
    /// The previous checkpoint's signature (empty for the first).
    pub prev_signature: String,
    /// When it was signed.
    #[serde(with = "ts")]
    pub created_at: DateTime<Utc>,
    /// The signer's public key, hex.
    pub public_key: String,
    /// Ed25519 signature over [`Checkpoint::signed_message`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The bytes signed: canonical JSON of every field but the signature.
    pub fn signed_message(&self) -> String {
        canonical_string(&json!({
            "stream": self.stream,
            "number": self.number,
            "fromSeq": self.from_seq,
            "toSeq": self.to_seq,
            "headHash": self.head_hash,
            "prevSignature": self.prev_signature,
            "createdAt": ts::format(&self.created_at),
            "publicKey": self.public_key,
        }))
    }

    /// Whether the signature is valid for the embedded public key.
    pub fn signature_valid(&self) -> bool {
        let Some(key) = parse_public_key(&self.public_key) else {
            return false;
        };
        let mut sig = [0u8; 64];
        if hex::decode_to_slice(&self.signature, &mut sig).is_err() {
            return false;
        }
        key.verify(
            self.signed_message().as_bytes(),
            &Signature::from_bytes(&sig),
        )
        .is_ok()
    }
}

/// Parses a hex public key.
pub fn parse_public_key(hex_key: &str) -> Option<VerifyingKey> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut b).ok()?;
    VerifyingKey::from_bytes(&b).ok()
}

/// Signs checkpoints for one writer.
#[derive(Clone)]
pub struct CheckpointSigner {
    key: SigningKey,
    public_hex: String,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("public_key", &self.public_hex)
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// A signer from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let public_hex = hex::encode(key.verifying_key().to_bytes());
        Self { key, public_hex }
    }

    /// A signer from 64 hex characters.
    pub fn from_hex(seed_hex: &str) -> Result<Self> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(seed_hex.trim(), &mut seed)
            .map_err(|e| AuditError::SigningKey(format!("not 64 hex characters: {e}")))?;
        Ok(Self::from_seed(seed))
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// Loads the seed from `path`, or generates one there (mode 0600) when the file does not exist.
    pub fn load_or_generate(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| AuditError::io(dir, e))?;
                }
                let signer = Self::generate();
                let seed = hex::encode(signer.key.to_bytes());
                write_private(path, seed.as_bytes()).map_err(|e| AuditError::io(path, e))?;
                tracing::info!(path = %path.display(), public_key = %signer.public_hex, "generated a new audit checkpoint signing key");
                Ok(signer)
            }
            Err(e) => Err(AuditError::io(path, e)),
        }
    }

    /// The public key, hex (what verifiers trust).
    pub fn public_key_hex(&self) -> &str {
        &self.public_hex
    }

    /// Signs the next checkpoint after `prev` covering the stream up to `head_seq`/`head_hash`.
    pub fn sign_next(
        &self,
        stream: &str,
        prev: Option<&Checkpoint>,
        head_seq: i64,
        head_hash: &str,
        now: DateTime<Utc>,
    ) -> Checkpoint {
        let mut cp = Checkpoint {
            stream: stream.to_owned(),
            number: prev.map_or(1, |p| p.number + 1),
            from_seq: prev.map_or(1, |p| p.to_seq + 1),
            to_seq: head_seq,
            head_hash: head_hash.to_owned(),
            prev_signature: prev.map(|p| p.signature.clone()).unwrap_or_default(),
            created_at: crate::event::micros(now),
            public_key: self.public_hex.clone(),
            signature: String::new(),
        };
        cp.signature = hex::encode(self.key.sign(cp.signed_message().as_bytes()).to_bytes());
        cp
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_chain_and_detect_changes() {
        let s = CheckpointSigner::from_seed([7; 32]);
        let now = Utc::now();
        let a = s.sign_next("w", None, 10, "aa", now);
        let b = s.sign_next("w", Some(&a), 25, "bb", now);
        assert!(a.signature_valid() && b.signature_valid());
        assert_eq!(
            (b.number, b.from_seq, b.prev_signature.as_str()),
            (2, 11, a.signature.as_str())
        );
        let mut forged = b.clone();
        forged.to_seq = 24;
        assert!(!forged.signature_valid());
    }

    #[test]
    fn key_file_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/audit.key");
        let a = CheckpointSigner::load_or_generate(&path).unwrap();
        let b = CheckpointSigner::load_or_generate(&path).unwrap();
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        assert!(CheckpointSigner::from_hex("zz").is_err());
    }
}
