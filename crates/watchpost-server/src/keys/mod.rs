//! API keys: the format, hashing, and the [`ApiKeyStore`] trait with memory, SQLite and PostgreSQL stores.
//!
//! A key reads `wpk_<id>_<secret>`: a 12-hex-digit id used for lookup and a 256-bit random secret
//! (base64url). Only the SHA-256 of the secret is stored; comparison is constant-time. The secret is
//! shown once, when the key is created.

mod memory;
mod postgres;
mod sqlite;

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use watchpost_core::Role;

pub use memory::MemoryKeyStore;
pub use postgres::PostgresKeyStore;
pub use sqlite::SqliteKeyStore;

use crate::store::Stores;

/// The prefix every stored key starts with.
pub const KEY_PREFIX: &str = "wpk_";

/// A stored API key (never the secret).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    /// The lookup id.
    pub id: String,
    /// A human name.
    pub name: String,
    /// The tenant; `None` for keys that belong to no tenant.
    pub tenant_id: Option<String>,
    /// The role.
    pub role: Role,
    /// SHA-256 of the secret, lowercase hex.
    #[serde(skip)]
    pub secret_hash: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("tenant_id", &self.tenant_id)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

impl ApiKeyRecord {
    /// Whether `secret` is this key's secret (constant-time).
    pub fn secret_matches(&self, secret: &str) -> bool {
        let presented = hash_secret(secret);
        presented
            .as_bytes()
            .ct_eq(self.secret_hash.as_bytes())
            .into()
    }
}

/// A new key: the record to store and the full key to show once.
#[derive(Clone)]
pub struct NewKey {
    /// What is stored.
    pub record: ApiKeyRecord,
    /// The full key, `wpk_<id>_<secret>`.
    pub key: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("record", &self.record)
            .field("key", &"<secret>")
            .finish()
    }
}

/// SHA-256 of a secret, lowercase hex.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Generates a key for `name`, `tenant_id` and `role`, created at `now`.
pub fn generate(name: &str, tenant_id: Option<String>, role: Role, now: DateTime<Utc>) -> NewKey {
    let mut rng = rand::rng();
    let mut id = [0u8; 6];
    rng.fill_bytes(&mut id);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let id = hex::encode(id);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    NewKey {
        key: format!("{KEY_PREFIX}{id}_{secret}"),
        record: ApiKeyRecord {
            id,
            name: name.to_owned(),
            tenant_id,
            role,
            secret_hash: hash_secret(&secret),
            created_at: now,
            revoked_at: None,
        },
    }
}

/// Splits `wpk_<id>_<secret>` into id and secret; `None` when the shape is wrong.
pub fn parse_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == 12
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    let secret_ok = (16..=128).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// What revoking did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The key is now revoked.
    Revoked,
    /// The key had been revoked before; nothing changed.
    AlreadyRevoked,
    /// No such key.
    NotFound,
}

/// A key store failure.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The backend failed.
    #[error("API key store ({backend}) failed: {reason}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// What failed.
        reason: String,
    },
    /// A key with this id exists already.
    #[error("an API key with id {0} exists already")]
    Duplicate(String),
}

/// Where API keys live.
pub trait ApiKeyStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a new key.
    fn insert(&self, record: ApiKeyRecord) -> BoxFuture<'_, Result<(), KeyStoreError>>;
    /// The key with `id`, revoked or not.
    fn get<'a>(&'a self, id: &'a str)
    -> BoxFuture<'a, Result<Option<ApiKeyRecord>, KeyStoreError>>;
    /// Every key, oldest first.
    fn list(&self) -> BoxFuture<'_, Result<Vec<ApiKeyRecord>, KeyStoreError>>;
    /// Revokes the key with `id` at `at`.
    fn revoke<'a>(
        &'a self,
        id: &'a str,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<RevokeOutcome, KeyStoreError>>;
    /// Whether any unrevoked key has the root role.
    fn has_active_root(&self) -> BoxFuture<'_, Result<bool, KeyStoreError>> {
        Box::pin(async move {
            Ok(self
                .list()
                .await?
                .iter()
                .any(|k| k.role == Role::Root && k.revoked_at.is_none()))
        })
    }
}

/// The key store for the opened backend.
pub fn store_for(stores: &Stores) -> Arc<dyn ApiKeyStore> {
    if let Some(pool) = &stores.postgres {
        Arc::new(PostgresKeyStore::new(pool.clone()))
    } else if let Some(pool) = &stores.sqlite {
        Arc::new(SqliteKeyStore::new(pool.clone()))
    } else {
        Arc::new(MemoryKeyStore::default())
    }
}

fn parse_role(s: &str) -> Role {
    // The CHECK constraint admits only these two words.
    if s == "root" {
        Role::Root
    } else {
        Role::Tenant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_match() {
        let k = generate("ci", Some("acme".into()), Role::Tenant, Utc::now());
        let (id, secret) = parse_key(&k.key).unwrap();
        assert_eq!(id, k.record.id);
        assert!(k.record.secret_matches(secret));
        assert!(!k.record.secret_matches("nope"));
        assert!(!format!("{k:?}").contains(secret));
        assert!(parse_key("wpk_ABCDEF012345_aaaaaaaaaaaaaaaaaaaa").is_none());
        assert!(parse_key("bearer-token").is_none());
        assert!(parse_key("wpk_abcdef012345_short").is_none());
    }
}
