//! A Redis URL and a key prefix per test; keys under the prefix are deleted afterwards.

use std::time::Duration;

/// The Redis URL tests use, from `WATCHPOST_TEST_REDIS_URL`, defaulting to 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("WATCHPOST_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned())
}

/// A Redis server reachable for this test, with a prefix nobody else uses.
#[derive(Debug)]
pub struct TestRedis {
    url: String,
    prefix: String,
}

impl TestRedis {
    /// Checks that Redis answers `PING` and picks a fresh prefix `wp-test:<unique>:`.
    pub async fn new() -> Self {
        let url = redis_url();
        let client = redis::Client::open(url.as_str())
            .unwrap_or_else(|e| panic!("WATCHPOST_TEST_REDIS_URL {url:?} is not a Redis URL: {e}"));
        let ping = tokio::time::timeout(Duration::from_secs(5), async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await;
        match ping {
            Ok(Ok(_)) => {}
            other => panic!(
                "Redis for tests is not reachable at {url} ({other:?}); run `cargo xtask ci`, which provisions it, \
                 or start redis-server and set WATCHPOST_TEST_REDIS_URL"
            ),
        }
        Self {
            url,
            prefix: format!("wp-test:{}:", crate::unique_suffix()),
        }
    }

    /// The server URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key prefix this test owns.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The server's TCP address (for a [`FaultProxy`](crate::FaultProxy)).
    pub fn socket_addr(&self) -> std::net::SocketAddr {
        use redis::IntoConnectionInfo;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .expect("valid Redis URL");
        match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                let host = if host == "localhost" {
                    "127.0.0.1"
                } else {
                    host.as_str()
                };
                format!("{host}:{port}")
                    .parse()
                    .expect("Redis host must be an IP address")
            }
            other => panic!("test Redis must be reached over TCP, not {other:?}"),
        }
    }

    /// A URL for the same server through `addr` (a fault proxy).
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        format!("redis://{addr}/")
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let url = self.url.clone();
        let pattern = format!("{}*", self.prefix);
        let _ = std::thread::spawn(move || {
            let Ok(client) = redis::Client::open(url.as_str()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(&pattern)
                .query(&mut conn)
                .unwrap_or_default();
            for chunk in keys.chunks(500) {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query(&mut conn);
            }
        })
        .join();
    }
}
