//! watchpost-ratelimit in the server: the default policy from `WATCHPOST_RATE_LIMIT_*`, keys by API
//! key, tenant or client IP (trusted proxies only), Redis when `WATCHPOST_REDIS_URL` is set, and every
//! denial recorded in the audit trail as action `rate_limit`.

use watchpost_audit::{Action, Auditor, NewEvent, Outcome};
use watchpost_ratelimit::{
    RateLimitConfig, RateLimitError, RateLimiter, RedisConfig, requests_per,
};

use crate::config::Config;

/// Paths never limited: probes and scrapes, and the Alertmanager webhook (it must never see a 429:
/// Alertmanager does not retry 4xx and would drop the alerts).
const EXEMPT_PATHS: &[&str] = &["/health*", "/ready", "/metrics", "/webhooks/alertmanager"];

/// The limiter for `config`; denials are audited through `auditor`.
pub fn limiter(config: &Config, auditor: &Auditor) -> Result<RateLimiter, RateLimitError> {
    let auditor = auditor.clone();
    let mut builder = RateLimiter::builder()
        .config(RateLimitConfig {
            enabled: config.rate_limit_enabled,
            default_policies: vec![
                requests_per(config.rate_limit_max_requests, config.rate_limit_window)
                    .named("default"),
            ],
            exempt_paths: EXEMPT_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            trusted_proxies: config.trusted_proxies.clone(),
            shadow: config.rate_limit_shadow,
            ..RateLimitConfig::default()
        })
        .on_deny(move |denial| {
            let mut event = NewEvent::new(Action::RateLimit);
            event.route = denial.route.map(str::to_owned);
            event.resource_type = Some("rate_limit_key".to_owned());
            event.resource_id = Some(denial.key.to_string());
            event.outcome = Outcome {
                status: Some(if denial.shadow { 200 } else { 429 }),
                ..Outcome::failure()
            };
            event.payload = Some(serde_json::json!({
                "policy": denial.policy.name(),
                "retryAfterMs": denial.retry_after_ms,
                "shadow": denial.shadow,
            }));
            // Detached: the limiter answers at once; the writer makes the event durable.
            if let Err(e) = auditor.record_detached(event) {
                tracing::warn!(error = %e, "could not audit a rate-limit denial");
            }
        });
    if let Some(url) = &config.redis_url {
        let mut redis = RedisConfig::new(url.clone());
        redis.timeout = config.rate_limit_redis_timeout;
        redis.failure_mode = config.rate_limit_failure_mode;
        builder = builder.redis(redis);
    }
    builder.build()
}
