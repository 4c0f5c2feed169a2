//! [`MemoryKeyStore`]: API keys in memory (the `memory` store; lost on restart).

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use super::{ApiKeyRecord, ApiKeyStore, KeyStoreError, RevokeOutcome};

/// Keys in a map behind a mutex.
#[derive(Debug, Default)]
pub struct MemoryKeyStore {
    keys: Mutex<BTreeMap<String, ApiKeyRecord>>,
}

impl MemoryKeyStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ApiKeyRecord>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ApiKeyStore for MemoryKeyStore {
    fn insert(&self, record: ApiKeyRecord) -> BoxFuture<'_, Result<(), KeyStoreError>> {
        Box::pin(async move {
            let mut keys = self.lock();
            if keys.contains_key(&record.id) {
                return Err(KeyStoreError::Duplicate(record.id));
            }
            keys.insert(record.id.clone(), record);
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<ApiKeyRecord>, KeyStoreError>> {
        Box::pin(async move { Ok(self.lock().get(id).cloned()) })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ApiKeyRecord>, KeyStoreError>> {
        Box::pin(async move {
            let mut all: Vec<ApiKeyRecord> = self.lock().values().cloned().collect();
            all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
            Ok(all)
        })
    }

    fn revoke<'a>(
        &'a self,
        id: &'a str,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<RevokeOutcome, KeyStoreError>> {
        Box::pin(async move {
            Ok(match self.lock().get_mut(id) {
                None => RevokeOutcome::NotFound,
                Some(k) if k.revoked_at.is_some() => RevokeOutcome::AlreadyRevoked,
                Some(k) => {
                    k.revoked_at = Some(at);
                    RevokeOutcome::Revoked
                }
            })
        })
    }
}
