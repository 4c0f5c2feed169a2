//! watchpost-audit in the server: the store for the configured backend, the writer (group commit,
//! spool under the data dir, signed checkpoints), the policy layer, the `/audit` routes and the
//! verification used by `GET /audit/verify` and `watchpost audit verify`.

use std::sync::Arc;

use watchpost_audit::store::{postgres::PostgresStore, sqlite::SqliteStore};
use watchpost_audit::{
    AuditConfig, AuditError, AuditLayer, AuditSink, AuditStore, Auditor, ConsoleSink, FileSink,
    FileSinkConfig, MemoryStore, VerifyOptions,
};
use watchpost_core::SharedClock;

use crate::config::{Config, StoreKind};
use crate::store::Stores;

/// The audit store on the opened backend.
pub fn store(stores: &Stores) -> Arc<dyn AuditStore> {
    if let Some(pool) = &stores.postgres {
        Arc::new(PostgresStore::new(pool.clone()))
    } else if let Some(pool) = &stores.sqlite {
        Arc::new(SqliteStore::new(pool.clone()))
    } else {
        Arc::new(MemoryStore::new())
    }
}

/// The writer's settings for `config`. With a persistent store the spool and the generated signing key
/// live in the data dir; the memory store has neither (nothing it holds survives a restart anyway).
pub fn audit_config(config: &Config) -> AuditConfig {
    let a = &config.audit;
    AuditConfig {
        data_dir: (config.store != StoreKind::Memory).then(|| config.data_dir.clone()),
        spool_max_bytes: a.spool_max_bytes,
        checkpoint_every: a.checkpoint_every,
        checkpoint_interval: a.checkpoint_interval,
        signing_key_hex: a.signing_key.clone(),
        redaction_key: a.redaction_key.as_ref().map(|k| k.as_bytes().to_vec()),
        ..AuditConfig::default()
    }
}

/// Starts the writer (needs a tokio runtime).
pub fn auditor(
    config: &Config,
    stores: &Stores,
    clock: SharedClock,
) -> Result<Auditor, AuditError> {
    let mut builder = Auditor::builder(store(stores))
        .config(audit_config(config))
        .clock(clock.clone());
    if config.audit.console {
        builder = builder.sink(Arc::new(ConsoleSink) as Arc<dyn AuditSink>);
    }
    if let Some(dir) = &config.audit.file_dir {
        let sink = FileSink::new(
            FileSinkConfig {
                dir: dir.clone(),
                max_file_bytes: 256 * 1024 * 1024,
                retention_days: config.audit.file_retention_days,
            },
            clock,
        )?;
        builder = builder.sink(Arc::new(sink) as Arc<dyn AuditSink>);
    }
    builder.start()
}

/// Which checkpoint keys verification trusts: this instance's own and the configured ones.
pub fn verify_options(config: &Config, own_public_key: &str) -> VerifyOptions {
    let mut trusted_keys = vec![own_public_key.to_owned()];
    trusted_keys.extend(config.audit.trusted_keys.iter().cloned());
    VerifyOptions {
        trusted_keys,
        ..VerifyOptions::default()
    }
}

/// The policy layer: mutating requests in the configured mode, reads (by policy) asynchronously.
pub fn layer(config: &Config, auditor: &Auditor) -> AuditLayer {
    AuditLayer::new(auditor.clone()).mutating_mode(config.audit.mode)
}

/// The `/audit` routes.
pub fn router(config: &Config, auditor: &Auditor) -> axum::Router {
    let options = verify_options(config, auditor.public_key_hex());
    watchpost_audit::router_with(auditor.clone(), options)
}
