//! Built-in checks, each behind its own cargo feature.
//!
//! | check | feature | what it does |
//! | --- | --- | --- |
//! | `PostgresCheck` | `postgres` | `SELECT 1` over a `deadpool_postgres::Pool`; pool figures as observed values |
//! | `SqliteCheck` | `sqlite` | `SELECT 1` over a `deadpool_sqlite::Pool` |
//! | `RedisCheck` | `redis` | `PING` over a connection manager or a client |
//! | `HttpCheck` | `http` | `GET` a URL, expect 2xx |
//! | `DiskCheck` | `disk` | free space of a path: warn below 10 %, fail below 5 % |
//! | `MemoryCheck` | `memory` | resident memory against the cgroup limit: warn above 90 % |

#[cfg(feature = "disk")]
mod disk;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "disk")]
pub use disk::DiskCheck;
#[cfg(feature = "http")]
pub use http::HttpCheck;
#[cfg(feature = "memory")]
pub use memory::MemoryCheck;
#[cfg(feature = "postgres")]
pub use postgres::PostgresCheck;
#[cfg(feature = "redis")]
pub use redis::RedisCheck;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteCheck;
