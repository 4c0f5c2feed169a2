//! watchpost-health in the server: the registry with the checks for the configured store, the data
//! dir's disk and the process memory; the lifecycle follows start-up and shutdown (see `serve.rs`).

use std::time::Duration;

use watchpost_health::checks::{DiskCheck, MemoryCheck, PostgresCheck, RedisCheck, SqliteCheck};
use watchpost_health::{Check, HealthConfig, HealthRegistry};

use crate::config::{Config, StoreKind};
use crate::store::Stores;

/// The health registry for `config` and the opened `stores`.
pub fn registry(config: &Config, stores: &Stores) -> Result<HealthRegistry, String> {
    registry_inner(config, stores).map_err(|e| e.to_string())
}

fn registry_inner(
    config: &Config,
    stores: &Stores,
) -> Result<HealthRegistry, Box<dyn std::error::Error>> {
    let backend = config.store.as_str();
    let mut health_config = HealthConfig::new("watchpost")
        .store_backend(backend)
        .version(env!("CARGO_PKG_VERSION"))
        .description("Watchpost operations server")
        .show_details(config.health_show_details);
    if config.store != StoreKind::Memory {
        health_config = health_config.db_check(backend);
    }
    let health = HealthRegistry::new(health_config);
    if let Some(pool) = &stores.postgres {
        health.register(
            Check::new("postgres", PostgresCheck::new(pool.clone()))
                .component_type("datastore")
                .cache_for(Duration::from_secs(1)),
        )?;
    }
    if let Some(pool) = &stores.sqlite {
        health.register(
            Check::new("sqlite", SqliteCheck::new(pool.clone()))
                .component_type("datastore")
                .cache_for(Duration::from_secs(1)),
        )?;
    }
    if let Some(url) = &config.redis_url {
        // Non-critical: without Redis, limits degrade to the configured failure mode; traffic still flows.
        let client =
            redis::Client::open(url.as_str()).map_err(|e| format!("WATCHPOST_REDIS_URL: {e}"))?;
        health.register(
            Check::new("redis", RedisCheck::from_client(client))
                .non_critical()
                .component_type("datastore")
                .cache_for(Duration::from_secs(1)),
        )?;
    }
    if stores.data_dir.is_dir() {
        // A full disk degrades the service before it breaks it: warn below 10 %, fail below 5 %.
        health.register(
            Check::new("disk", DiskCheck::new(stores.data_dir.clone()))
                .non_critical()
                .component_type("system")
                .cache_for(Duration::from_secs(10)),
        )?;
    }
    health.register(
        Check::new("memory", MemoryCheck::new())
            .non_critical()
            .component_type("system")
            .cache_for(Duration::from_secs(5)),
    )?;
    Ok(health)
}
