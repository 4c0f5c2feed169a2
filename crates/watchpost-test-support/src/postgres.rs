//! A PostgreSQL database per test, created on the server `cargo xtask ci` provisioned and dropped afterwards.

use std::net::SocketAddr;
use std::time::Duration;

/// The admin URL tests connect to, from `WATCHPOST_TEST_DATABASE_URL`, defaulting to 127.0.0.1:5432 as `postgres`.
pub fn admin_url() -> String {
    std::env::var("WATCHPOST_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for the life of this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    admin: tokio_postgres::Config,
}

async fn admin_connect(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(10),
        config.connect(tokio_postgres::NoTls),
    )
    .await
    .unwrap_or_else(|_| panic!("{}", unavailable("timed out")))
    .unwrap_or_else(|e| panic!("{}", unavailable(&e.to_string())));
    tokio::spawn(connection);
    client
}

fn unavailable(why: &str) -> String {
    format!(
        "PostgreSQL for tests is not reachable at {} ({why}); run `cargo xtask ci`, which provisions it, \
         or start PostgreSQL and set WATCHPOST_TEST_DATABASE_URL",
        admin_url()
    )
}

impl TestDatabase {
    /// Creates a fresh, empty database `wp_test_<unique>`.
    pub async fn create() -> Self {
        let admin: tokio_postgres::Config = admin_url()
            .parse()
            .expect("WATCHPOST_TEST_DATABASE_URL is not a PostgreSQL URL");
        let name = format!("wp_test_{}", crate::unique_suffix());
        let client = admin_connect(&admin).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        Self { name, admin }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A connection URL for this database, as the admin user.
    pub fn url(&self) -> String {
        let (host, port) = self.host_port();
        self.url_at(&host, port)
    }

    /// The server's TCP address (for putting a [`FaultProxy`](crate::FaultProxy) in front of it).
    pub fn socket_addr(&self) -> SocketAddr {
        let (host, port) = self.host_port();
        let host = if host == "localhost" {
            "127.0.0.1".to_owned()
        } else {
            host
        };
        format!("{host}:{port}")
            .parse()
            .expect("test PostgreSQL host must be an IP address or localhost")
    }

    /// A connection URL for this database that goes through `addr` (a fault proxy).
    pub fn url_via(&self, addr: SocketAddr) -> String {
        self.url_at(&addr.ip().to_string(), addr.port())
    }

    fn host_port(&self) -> (String, u16) {
        let host = self
            .admin
            .get_hosts()
            .iter()
            .find_map(|h| match h {
                tokio_postgres::config::Host::Tcp(h) => Some(h.clone()),
                #[allow(unreachable_patterns)] // Unix sockets only exist on unix targets.
                _ => None,
            })
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let port = self.admin.get_ports().first().copied().unwrap_or(5432);
        (host, port)
    }

    fn url_at(&self, host: &str, port: u16) -> String {
        let user = self.admin.get_user().unwrap_or("postgres");
        let password = self
            .admin
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!("postgres://{user}{password}@{host}:{port}/{}", self.name)
    }

    /// Drops the database now (also done on drop).
    pub async fn drop_now(self) {
        let client = admin_connect(&self.admin).await;
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
        std::mem::forget(self);
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context guarantee; use a private runtime on a thread.
        let name = self.name.clone();
        let admin = self.admin.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(Ok((client, conn))) = tokio::time::timeout(
                    Duration::from_secs(5),
                    admin.connect(tokio_postgres::NoTls),
                )
                .await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}
