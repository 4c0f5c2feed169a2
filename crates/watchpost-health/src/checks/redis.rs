//! [`RedisCheck`]: `PING` over a `redis::aio::ConnectionManager` or a `redis::Client`.

use redis::aio::ConnectionManager;

use crate::check::{CheckFuture, CheckOutcome, HealthCheck};

#[derive(Clone)]
enum Target {
    Manager(ConnectionManager),
    Client(redis::Client),
}

/// Sends `PING` and expects `PONG`.
///
/// With a [`ConnectionManager`] the check shares the application's connection (which
/// reconnects by itself); with a [`redis::Client`] each run opens a connection.
#[derive(Clone)]
pub struct RedisCheck {
    target: Target,
}

impl std::fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.target {
            Target::Manager(_) => "connection manager",
            Target::Client(_) => "client",
        };
        f.debug_struct("RedisCheck").field("via", &kind).finish()
    }
}

impl RedisCheck {
    /// A check sharing `manager`.
    pub fn new(manager: ConnectionManager) -> Self {
        Self {
            target: Target::Manager(manager),
        }
    }

    /// A check opening a connection from `client` on each run.
    pub fn from_client(client: redis::Client) -> Self {
        Self {
            target: Target::Client(client),
        }
    }
}

fn outcome(reply: redis::RedisResult<String>) -> CheckOutcome {
    match reply {
        Ok(pong) if pong == "PONG" => CheckOutcome::pass(),
        Ok(other) => CheckOutcome::fail(format!("Redis answered PING with {other:?}, not PONG")),
        Err(e) => CheckOutcome::fail(format!(
            "Redis PING failed: {e}; is Redis running and WATCHPOST_REDIS_URL right?"
        )),
    }
}

impl HealthCheck for RedisCheck {
    fn run(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match &self.target {
                Target::Manager(manager) => {
                    let mut conn = manager.clone();
                    outcome(redis::cmd("PING").query_async(&mut conn).await)
                }
                Target::Client(client) => match client.get_multiplexed_async_connection().await {
                    Ok(mut conn) => outcome(redis::cmd("PING").query_async(&mut conn).await),
                    Err(e) => CheckOutcome::fail(format!(
                        "cannot connect to Redis: {e}; is Redis running and WATCHPOST_REDIS_URL right?"
                    )),
                },
            }
        })
    }

    fn component_type(&self) -> &'static str {
        "datastore"
    }
}
