//! [`RedisStore`] (feature `redis`): limits shared by replicas through one Lua round trip
//! per decision, with the same arithmetic as the local store.
//!
//! - Each (key, policy) is a Redis hash `{<prefix><key>}:<policy id>` with fields `w`
//!   (window index), `c` (current count) and `p` (previous count), expiring when it would
//!   read as zero. All of one key's policies share a hash tag, so the script also runs on
//!   Redis Cluster.
//! - The script reads the time from Redis (`TIME`) so every replica agrees on window
//!   edges; tests pass the time explicitly.
//! - A key refused until some moment is answered locally until then, without a call.
//! - Every call is bounded by a timeout (default 20 ms); after a failure or timeout the
//!   [`FailureMode`] decides (fail-open by default) and the decision is counted as
//!   degraded. After `breaker_threshold` consecutive failures the circuit opens for
//!   `breaker_cooldown`: Redis is not called and decisions degrade at once; the next call
//!   after the cooldown probes it again, and one success closes the circuit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

use crate::clock::MonotonicClock;
use crate::decision::{Decision, Degraded};
use crate::error::RateLimitError;
use crate::key::RateLimitKey;
use crate::metrics::Metrics;
use crate::policy::PolicySet;
use crate::window::WindowVerdict;

/// What a decision is when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Let the request through (availability first).
    #[default]
    FailOpen,
    /// Refuse the request with a 429 (protection first).
    FailClosed,
}

/// Redis store settings.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://host:port/db` (`WATCHPOST_REDIS_URL`).
    pub url: String,
    /// Prefix of every key written (default `watchpost:rl:`).
    pub key_prefix: String,
    /// Longest wait for one decision (default 20 ms).
    pub timeout: Duration,
    /// What to decide when Redis fails or times out (default fail-open).
    pub failure_mode: FailureMode,
    /// Consecutive failures that open the circuit (default 3).
    pub breaker_threshold: u32,
    /// How long an open circuit skips Redis (default 1 s).
    pub breaker_cooldown: Duration,
    /// Entries in the local cache of refused keys (default 65,536; when full, new refusals are not cached).
    pub deny_cache_size: usize,
}

impl RedisConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: "watchpost:rl:".to_owned(),
            timeout: Duration::from_millis(20),
            failure_mode: FailureMode::FailOpen,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(1),
            deny_cache_size: 65_536,
        }
    }
}

/// The sliding-window counter in Lua; see [`crate::window`] for the arithmetic.
/// KEYS: one per policy. ARGV: now_ms (empty: Redis TIME), cost, then limit and window_ms per policy.
/// Returns {allowed, remaining1, reset1, wait1, remaining2, ...}; waits of -1 mean never.
const SCRIPT: &str = r"
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local cost = tonumber(ARGV[2])
local n = #KEYS
local function earliest(p, room, w)
  if p <= room then return 0 end
  local max_left = math.floor(((room + 1) * w - 1) / p)
  if max_left > w then max_left = w end
  return w - max_left
end
local function wait_for(prev, cur, limit, w, e, c)
  if c > limit then return -1 end
  if cur + c <= limit then
    local x = earliest(prev, limit - cur - c, w) - e
    if x < 0 then x = 0 end
    return x
  end
  return (w - e) + earliest(cur, limit - c, w)
end
local out = {1}
local state = {}
for i = 1, n do
  local limit = tonumber(ARGV[1 + 2 * i])
  local w = tonumber(ARGV[2 + 2 * i])
  local win = math.floor(now / w)
  local e = now - win * w
  local left = w - e
  local v = redis.call('HMGET', KEYS[i], 'w', 'c', 'p')
  local sw, c, p = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
  if sw == nil or win - sw >= 2 then c, p = 0, 0
  elseif win - sw == 1 then p = c; c = 0 end
  local used = math.floor(p * left / w) + c
  local remaining, reset, wait
  if used + cost <= limit then
    remaining = limit - used - cost
    wait = 0
    local one = cost
    if one < 1 then one = 1 end
    if remaining >= one then reset = left else reset = wait_for(p, c + cost, limit, w, e, one) end
  else
    out[1] = 0
    remaining = limit - used
    if remaining < 0 then remaining = 0 end
    wait = wait_for(p, c, limit, w, e, cost)
    reset = wait
  end
  state[i] = {win, c, p, w, e}
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = wait
end
if out[1] == 1 then
  for i = 1, n do
    local s = state[i]
    redis.call('HSET', KEYS[i], 'w', s[1], 'c', s[2] + cost, 'p', s[3])
    redis.call('PEXPIRE', KEYS[i], 2 * s[4] - s[5])
  end
end
return out
";

/// The Redis store.
#[derive(Debug)]
pub struct RedisStore {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    script: redis::Script,
    config: RedisConfig,
    addr: String,
    clock: MonotonicClock,
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    deny_cache: Vec<Mutex<HashMap<u64, u64>>>,
}

const DENY_SHARDS: usize = 16;

impl RedisStore {
    /// A store for `config`; connects on first use.
    pub fn new(config: RedisConfig, clock: MonotonicClock) -> Result<Self, RateLimitError> {
        let client =
            redis::Client::open(config.url.as_str()).map_err(|e| RateLimitError::RedisUrl {
                url: redact(&config.url),
                reason: e.to_string(),
            })?;
        let addr = client.get_connection_info().addr().to_string();
        Ok(Self {
            client,
            conn: OnceCell::new(),
            script: redis::Script::new(SCRIPT),
            addr,
            clock,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            deny_cache: (0..DENY_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Whether the circuit is open now.
    pub fn circuit_open(&self) -> bool {
        self.clock.now_ms() < self.open_until_ms.load(Ordering::Relaxed)
    }

    fn redis_key(&self, key: &RateLimitKey, policy_id: u32) -> String {
        format!(
            "{{{}{}}}:{policy_id}",
            self.config.key_prefix,
            key.to_store_string()
        )
    }

    async fn connection(&self) -> Result<ConnectionManager, RateLimitError> {
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(self.config.timeout.max(Duration::from_millis(250))))
            .set_number_of_retries(1);
        self.conn
            .get_or_try_init(|| async {
                ConnectionManager::new_with_config(self.client.clone(), cfg)
                    .await
                    .map_err(|e| self.redis_error(&e))
            })
            .await
            .cloned()
    }

    /// Connects and loads the script now (call at start-up, so the first request does not
    /// pay for the connection inside its timeout). Later failures reconnect by themselves.
    pub async fn connect(&self) -> Result<(), RateLimitError> {
        let mut conn = self.connection().await?;
        self.script
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(&e))?;
        Ok(())
    }

    fn redis_error(&self, e: &redis::RedisError) -> RateLimitError {
        RateLimitError::Redis {
            addr: self.addr.clone(),
            reason: e.to_string(),
        }
    }

    /// Runs the script at `now_ms` (`None`: Redis's own clock), without timeout, breaker or cache.
    pub async fn decide_raw(
        &self,
        key: &RateLimitKey,
        set: &PolicySet,
        cost: u64,
        now_ms: Option<u64>,
    ) -> Result<Decision, RateLimitError> {
        let mut conn = self.connection().await?;
        let mut inv = self.script.prepare_invoke();
        for (id, _) in &set.policies {
            inv.key(self.redis_key(key, *id));
        }
        inv.arg(now_ms.map(|n| n.to_string()).unwrap_or_default());
        inv.arg(cost);
        for (_, p) in &set.policies {
            inv.arg(p.limit()).arg(p.window_ms());
        }
        let out: Vec<i64> = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.redis_error(&e))?;
        let mut d = Decision::empty();
        for chunk in out.get(1..).unwrap_or_default().chunks_exact(3) {
            let to_u64 = |v: i64| u64::try_from(v).unwrap_or(u64::MAX);
            let wait_ms = to_u64(chunk[2]);
            d.push(WindowVerdict {
                allowed: wait_ms == 0,
                remaining: to_u64(chunk[0]),
                reset_ms: to_u64(chunk[1]),
                wait_ms,
            });
        }
        Ok(d)
    }

    /// Decides with the local refusal cache, the timeout, the breaker and the failure mode.
    pub(crate) async fn decide(
        &self,
        key: &RateLimitKey,
        key_hash: u64,
        set: &PolicySet,
        cost: u64,
        metrics: &Metrics,
    ) -> Decision {
        let now = self.clock.now_ms();
        let shard = &self.deny_cache[(key_hash as usize) % DENY_SHARDS];
        {
            let mut cache = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(&until) = cache.get(&key_hash) {
                if now < until {
                    return self.refused_locally(set, until - now);
                }
                cache.remove(&key_hash);
            }
        }
        if now < self.open_until_ms.load(Ordering::Relaxed) {
            return self.degrade(set);
        }
        let result =
            match tokio::time::timeout(self.config.timeout, self.decide_raw(key, set, cost, None))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(RateLimitError::RedisTimeout {
                    addr: self.addr.clone(),
                    timeout_ms: u64::try_from(self.config.timeout.as_millis()).unwrap_or(u64::MAX),
                }),
            };
        match result {
            Ok(d) => {
                self.failures.store(0, Ordering::Relaxed);
                if !d.allowed() && d.retry_after_ms() != u64::MAX {
                    let mut cache = shard.lock().unwrap_or_else(|e| e.into_inner());
                    if cache.len() < self.config.deny_cache_size / DENY_SHARDS + 1 {
                        cache.insert(key_hash, now + d.retry_after_ms());
                    }
                }
                d
            }
            Err(e) => {
                metrics.store_errors.inc();
                let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.config.breaker_threshold {
                    let cooldown =
                        u64::try_from(self.config.breaker_cooldown.as_millis()).unwrap_or(u64::MAX);
                    self.open_until_ms.store(
                        self.clock.now_ms().saturating_add(cooldown),
                        Ordering::Relaxed,
                    );
                }
                tracing::warn!(target: "watchpost_ratelimit", error = %e, failures = n, "rate-limit store failed; decision degraded");
                self.degrade(set)
            }
        }
    }

    fn refused_locally(&self, set: &PolicySet, wait_ms: u64) -> Decision {
        let mut d = Decision::empty();
        for _ in &set.policies {
            d.push(WindowVerdict {
                allowed: false,
                remaining: 0,
                reset_ms: wait_ms,
                wait_ms,
            });
        }
        d
    }

    fn degrade(&self, set: &PolicySet) -> Decision {
        let mode = match self.config.failure_mode {
            FailureMode::FailOpen => Degraded::FailOpen,
            FailureMode::FailClosed => Degraded::FailClosed,
        };
        let retry = u64::try_from(self.config.breaker_cooldown.as_millis())
            .unwrap_or(1000)
            .max(1000);
        Decision::degraded(set.policies.len(), mode, retry)
    }
}

/// The URL without a password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
