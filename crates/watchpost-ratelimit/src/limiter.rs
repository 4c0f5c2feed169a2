//! [`RateLimiter`]: the configured limiter (policies, keys, store, hooks) and its builder.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use prometheus_client::registry::Registry;
use watchpost_core::{Principal, RequestContext, Role, TrustedProxies};

use crate::clock::MonotonicClock;
use crate::decision::Decision;
use crate::error::RateLimitError;
use crate::key::{KeyHasher, RateLimitKey};
use crate::local::{DEFAULT_MAX_KEYS, LocalStore};
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicySet, requests_per};

/// A custom key function: return `None` to fall back to the default rule.
pub type KeyFn = Arc<dyn Fn(&http::request::Parts) -> Option<RateLimitKey> + Send + Sync>;

/// Called on every denial (also in shadow mode), e.g. to write an audit event.
pub type DenialHook = Arc<dyn Fn(&DenialEvent<'_>) + Send + Sync>;

/// What the denial hook is told.
#[derive(Debug, Clone, Copy)]
pub struct DenialEvent<'a> {
    /// Who was limited.
    pub key: &'a RateLimitKey,
    /// The policy that refused the request.
    pub policy: &'a Policy,
    /// The matched route template, when a route matched.
    pub route: Option<&'a str>,
    /// Milliseconds until the request would be allowed (`u64::MAX`: never, its cost exceeds the limit).
    pub retry_after_ms: u64,
    /// True in shadow mode: the request was let through anyway.
    pub shadow: bool,
}

/// Configuration with plain fields, for a server that maps environment variables onto it.
#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// Off: every request passes untouched (no headers).
    pub enabled: bool,
    /// The policies for requests no route, role or tenant rule covers.
    pub default_policies: Vec<Policy>,
    /// Policies by route template (axum `MatchedPath`, e.g. `/incidents/{id}`).
    pub route_policies: Vec<(String, Vec<Policy>)>,
    /// Paths never limited: exact paths, or prefixes ending in `*` (default `/health*`, `/metrics`).
    pub exempt_paths: Vec<String>,
    /// Roles never limited (default none: root is limited too).
    pub exempt_roles: Vec<Role>,
    /// Policies by role, taking precedence over route and default policies.
    pub role_overrides: Vec<(Role, Vec<Policy>)>,
    /// Policies by tenant id, taking precedence over everything else.
    pub tenant_overrides: Vec<(String, Vec<Policy>)>,
    /// Proxies whose forwarding headers are believed when finding the client IP.
    pub trusted_proxies: TrustedProxies,
    /// IPv6 clients are grouped by this prefix length (default 56).
    pub ipv6_prefix: u8,
    /// Hard cap on local store entries (keys × policies; default 1,000,000).
    pub max_keys: usize,
    /// Decide, log and count, but never refuse.
    pub shadow: bool,
    /// Also send `X-RateLimit-Limit`, `-Remaining` and `-Reset`.
    pub legacy_headers: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            default_policies: vec![requests_per(1000, Duration::from_secs(60))],
            route_policies: Vec::new(),
            exempt_paths: vec!["/health*".to_owned(), "/metrics".to_owned()],
            exempt_roles: Vec::new(),
            role_overrides: Vec::new(),
            tenant_overrides: Vec::new(),
            trusted_proxies: TrustedProxies::none(),
            ipv6_prefix: 56,
            max_keys: DEFAULT_MAX_KEYS,
            shadow: false,
            legacy_headers: false,
        }
    }
}

pub(crate) enum Backend {
    Local(Arc<LocalStore>),
    #[cfg(feature = "redis")]
    Redis(Arc<crate::redis_store::RedisStore>),
}

pub(crate) struct Inner {
    pub(crate) config: RateLimitConfig,
    pub(crate) default_set: Arc<PolicySet>,
    pub(crate) route_sets: Vec<(String, Arc<PolicySet>)>,
    pub(crate) role_sets: Vec<(Role, Arc<PolicySet>)>,
    pub(crate) tenant_sets: Vec<(String, Arc<PolicySet>)>,
    pub(crate) backend: Backend,
    pub(crate) hasher: KeyHasher,
    pub(crate) clock: MonotonicClock,
    pub(crate) metrics: Metrics,
    pub(crate) key_fn: Option<KeyFn>,
    pub(crate) on_deny: Option<DenialHook>,
}

/// The rate limiter: cheap to clone, shared by every layer built from it.
#[derive(Clone)]
pub struct RateLimiter {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.inner.config)
            .field(
                "backend",
                &match self.inner.backend {
                    Backend::Local(_) => "local",
                    #[cfg(feature = "redis")]
                    Backend::Redis(_) => "redis",
                },
            )
            .finish_non_exhaustive()
    }
}

/// Builds a [`RateLimiter`].
pub struct RateLimiterBuilder {
    config: RateLimitConfig,
    clock: Option<MonotonicClock>,
    key_fn: Option<KeyFn>,
    on_deny: Option<DenialHook>,
    #[cfg(feature = "redis")]
    redis: Option<crate::redis_store::RedisConfig>,
}

impl fmt::Debug for RateLimiterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiterBuilder")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl RateLimiterBuilder {
    /// Replaces the whole configuration.
    #[must_use]
    pub fn config(mut self, config: RateLimitConfig) -> Self {
        self.config = config;
        self
    }

    /// The default policies (1 to 4), e.g. 100 per minute and 1,000 per day.
    #[must_use]
    pub fn policies(mut self, policies: impl IntoIterator<Item = Policy>) -> Self {
        self.config.default_policies = policies.into_iter().collect();
        self
    }

    /// Policies for one route template (`/incidents/{id}`), with counts of their own.
    #[must_use]
    pub fn route(mut self, template: &str, policies: impl IntoIterator<Item = Policy>) -> Self {
        self.config
            .route_policies
            .push((template.to_owned(), policies.into_iter().collect()));
        self
    }

    /// Policies for every principal of `role` (over route and default policies).
    #[must_use]
    pub fn role_override(mut self, role: Role, policies: impl IntoIterator<Item = Policy>) -> Self {
        self.config
            .role_overrides
            .push((role, policies.into_iter().collect()));
        self
    }

    /// Policies for one tenant (over everything else).
    #[must_use]
    pub fn tenant_override(
        mut self,
        tenant: &str,
        policies: impl IntoIterator<Item = Policy>,
    ) -> Self {
        self.config
            .tenant_overrides
            .push((tenant.to_owned(), policies.into_iter().collect()));
        self
    }

    /// Replaces the exempt paths (exact, or a prefix ending in `*`).
    #[must_use]
    pub fn exempt_paths(mut self, paths: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.config.exempt_paths = paths.into_iter().map(Into::into).collect();
        self
    }

    /// The trusted proxies for the client IP.
    #[must_use]
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.config.trusted_proxies = proxies;
        self
    }

    /// The cap on local store entries.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.config.max_keys = max_keys;
        self
    }

    /// Shadow mode: never refuse, only log and count.
    #[must_use]
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.config.shadow = shadow;
        self
    }

    /// Also send the legacy `X-RateLimit-*` headers.
    #[must_use]
    pub fn legacy_headers(mut self, on: bool) -> Self {
        self.config.legacy_headers = on;
        self
    }

    /// The clock decisions are made by (default: [`MonotonicClock::coarse`]).
    #[must_use]
    pub fn clock(mut self, clock: MonotonicClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A custom key function; when it returns `None` the default rule applies.
    #[must_use]
    pub fn key_fn(
        mut self,
        f: impl Fn(&http::request::Parts) -> Option<RateLimitKey> + Send + Sync + 'static,
    ) -> Self {
        self.key_fn = Some(Arc::new(f));
        self
    }

    /// The denial hook.
    #[must_use]
    pub fn on_deny(mut self, f: impl Fn(&DenialEvent<'_>) + Send + Sync + 'static) -> Self {
        self.on_deny = Some(Arc::new(f));
        self
    }

    /// Share limits through Redis instead of the local store.
    #[cfg(feature = "redis")]
    #[must_use]
    pub fn redis(mut self, redis: crate::redis_store::RedisConfig) -> Self {
        self.redis = Some(redis);
        self
    }

    /// Checks the configuration and builds the limiter (no I/O: Redis is connected on first use).
    pub fn build(self) -> Result<RateLimiter, RateLimitError> {
        let c = self.config;
        if c.ipv6_prefix > 128 {
            return Err(RateLimitError::InvalidConfig(format!(
                "ipv6_prefix {} is not a prefix length (0 to 128)",
                c.ipv6_prefix
            )));
        }
        if c.max_keys == 0 {
            return Err(RateLimitError::InvalidConfig(
                "max_keys must be at least 1".to_owned(),
            ));
        }
        let metrics = Metrics::default();
        let mut next_id = 0u32;
        let mut make = |policies: &[Policy]| {
            let mut set = PolicySet::new(
                policies
                    .iter()
                    .map(|p| {
                        next_id += 1;
                        (next_id, p.clone())
                    })
                    .collect(),
            )?;
            set.attach_counters(&metrics);
            Ok::<_, RateLimitError>(Arc::new(set))
        };
        let default_set = make(&c.default_policies)?;
        let route_sets = c
            .route_policies
            .iter()
            .map(|(r, p)| Ok((r.clone(), make(p)?)))
            .collect::<Result<Vec<_>, RateLimitError>>()?;
        let role_sets = c
            .role_overrides
            .iter()
            .map(|(r, p)| Ok((*r, make(p)?)))
            .collect::<Result<Vec<_>, RateLimitError>>()?;
        let tenant_sets = c
            .tenant_overrides
            .iter()
            .map(|(t, p)| Ok((t.clone(), make(p)?)))
            .collect::<Result<Vec<_>, RateLimitError>>()?;
        let clock = self.clock.unwrap_or_else(MonotonicClock::coarse);
        let local = Arc::new(LocalStore::new(c.max_keys));
        #[cfg(feature = "redis")]
        let backend = match self.redis {
            Some(r) => Backend::Redis(Arc::new(crate::redis_store::RedisStore::new(
                r,
                clock.clone(),
            )?)),
            None => Backend::Local(local),
        };
        #[cfg(not(feature = "redis"))]
        let backend = Backend::Local(local);
        Ok(RateLimiter {
            inner: Arc::new(Inner {
                config: c,
                default_set,
                route_sets,
                role_sets,
                tenant_sets,
                backend,
                hasher: KeyHasher::random(),
                clock,
                metrics,
                key_fn: self.key_fn,
                on_deny: self.on_deny,
            }),
        })
    }
}

impl RateLimiter {
    /// A builder with the default configuration (1,000 requests per minute, local store).
    pub fn builder() -> RateLimiterBuilder {
        RateLimiterBuilder {
            config: RateLimitConfig::default(),
            clock: None,
            key_fn: None,
            on_deny: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &RateLimitConfig {
        &self.inner.config
    }

    /// The default policy set.
    pub fn default_policies(&self) -> &Arc<PolicySet> {
        &self.inner.default_set
    }

    /// The set for a request on `route` by `principal`: tenant override, else role override,
    /// else route policies, else the default.
    pub fn policies_for(
        &self,
        route: Option<&str>,
        principal: Option<&Principal>,
    ) -> &Arc<PolicySet> {
        let i = &self.inner;
        if let Some(p) = principal {
            if let Some(t) = &p.tenant_id
                && let Some((_, s)) = i.tenant_sets.iter().find(|(id, _)| **id == **t)
            {
                return s;
            }
            if let Some((_, s)) = i.role_sets.iter().find(|(r, _)| *r == p.role) {
                return s;
            }
        }
        if let Some(r) = route
            && let Some((_, s)) = i.route_sets.iter().find(|(t, _)| t == r)
        {
            return s;
        }
        &i.default_set
    }

    /// Whether `path` is exempt.
    pub fn is_exempt_path(&self, path: &str) -> bool {
        self.inner
            .config
            .exempt_paths
            .iter()
            .any(|p| match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == p,
            })
    }

    /// The key for a request by the configured rule.
    pub fn key_for(&self, parts: &http::request::Parts) -> RateLimitKey {
        if let Some(f) = &self.inner.key_fn
            && let Some(k) = f(parts)
        {
            return k;
        }
        let ctx = parts.extensions.get::<RequestContext>();
        let principal = parts
            .extensions
            .get::<Principal>()
            .or_else(|| ctx.and_then(|c| c.principal.as_ref()));
        if let Some(p) = principal {
            if !p.key_id.is_empty() {
                return RateLimitKey::ApiKey(p.key_id.clone());
            }
            if let Some(t) = &p.tenant_id {
                return RateLimitKey::Tenant(t.clone());
            }
        }
        let ip = ctx.and_then(|c| c.client_ip).or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(peer)| {
                    self.inner
                        .config
                        .trusted_proxies
                        .client_ip(peer.ip(), &parts.headers)
                })
        });
        match ip {
            Some(ip) => RateLimitKey::ip(ip, self.inner.config.ipv6_prefix),
            // No address known (no ConnectInfo, no context): every such request shares one key.
            None => RateLimitKey::Custom("unknown-client".to_owned()),
        }
    }

    /// Decides without waiting when the store is local; `None` when the store needs I/O.
    #[inline]
    pub fn try_check_now(
        &self,
        key: &RateLimitKey,
        set: &PolicySet,
        cost: u64,
    ) -> Option<Decision> {
        match &self.inner.backend {
            Backend::Local(store) => {
                let now = self.inner.clock.now_ms();
                Some(store.decide(self.inner.hasher.hash(key), set, cost, now))
            }
            #[cfg(feature = "redis")]
            Backend::Redis(_) => None,
        }
    }

    /// Decides a request of `cost` by `key` against `set`, counting it when allowed.
    pub async fn check(&self, key: &RateLimitKey, set: &PolicySet, cost: u64) -> Decision {
        match &self.inner.backend {
            Backend::Local(_) => self
                .try_check_now(key, set, cost)
                .unwrap_or_else(Decision::empty),
            #[cfg(feature = "redis")]
            Backend::Redis(store) => {
                store
                    .decide(
                        key,
                        self.inner.hasher.hash(key),
                        set,
                        cost,
                        &self.inner.metrics,
                    )
                    .await
            }
        }
    }

    /// Registers the metrics (see [`crate::metrics`]) into `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let local = match &self.inner.backend {
            Backend::Local(s) => Some(s.clone()),
            #[cfg(feature = "redis")]
            Backend::Redis(_) => None,
        };
        self.inner.metrics.register(registry, local);
    }

    /// The local store, when the limiter uses one.
    pub fn local_store(&self) -> Option<&LocalStore> {
        match &self.inner.backend {
            Backend::Local(s) => Some(s),
            #[cfg(feature = "redis")]
            Backend::Redis(_) => None,
        }
    }

    /// The Redis store, when the limiter uses one.
    #[cfg(feature = "redis")]
    pub fn redis_store(&self) -> Option<&crate::redis_store::RedisStore> {
        match &self.inner.backend {
            Backend::Redis(s) => Some(s),
            Backend::Local(_) => None,
        }
    }

    /// Connects the store now when it needs a connection (Redis); a no-op for the local store.
    pub async fn connect(&self) -> Result<(), RateLimitError> {
        match &self.inner.backend {
            Backend::Local(_) => Ok(()),
            #[cfg(feature = "redis")]
            Backend::Redis(s) => s.connect().await,
        }
    }

    /// The layer enforcing this limiter.
    pub fn layer(&self) -> crate::layer::RateLimitLayer {
        crate::layer::RateLimitLayer::new(self.clone())
    }
}
