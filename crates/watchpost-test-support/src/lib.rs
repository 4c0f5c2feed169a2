//! Test helpers shared by the Watchpost crates (a dev-dependency only; never shipped).
//!
//! | module | what it gives a test |
//! | --- | --- |
//! | [`postgres`] | [`TestDatabase`]: a PostgreSQL database of its own, dropped afterwards |
//! | [`redis`] | [`TestRedis`]: a Redis URL and a key prefix of its own, cleaned afterwards |
//! | [`proxy`] | [`FaultProxy`]: a TCP proxy that passes, stalls or cuts connections on command |
//! | [`logs`] | [`LogCapture`]: structured log lines captured for assertions |
//! | [`net`] | free ports and waiting for a port to answer |
//!
//! Services are found through `WATCHPOST_TEST_DATABASE_URL` and `WATCHPOST_TEST_REDIS_URL`
//! (`cargo xtask ci` sets them after provisioning), defaulting to PostgreSQL and Redis on
//! 127.0.0.1. A missing service fails the test with a message saying how to start it:
//! no test is ever skipped because a service is absent.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() {
//! use watchpost_test_support::{FaultProxy, TestDatabase};
//!
//! let db = TestDatabase::create().await;
//! let proxy = FaultProxy::start(db.socket_addr()).await;
//! let url = db.url_via(proxy.addr());
//! // ... connect to `url`, then cut the connection under the client:
//! proxy.cut();
//! # }
//! ```

pub mod logs;
pub mod net;
pub mod postgres;
pub mod proxy;
pub mod redis;

pub use logs::LogCapture;
pub use net::{free_addr, free_port, wait_for_port};
pub use postgres::TestDatabase;
pub use proxy::{FaultMode, FaultProxy};
pub use redis::TestRedis;

/// A short unique suffix for names of databases, schemas and key prefixes.
pub fn unique_suffix() -> String {
    uuid::Uuid::now_v7().simple().to_string()[20..].to_owned()
}
