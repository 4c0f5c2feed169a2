//! Configuration: one table of settings, read from defaults, an optional TOML file, the environment
//! and command-line flags (later sources win), then parsed into a typed [`Config`].
//!
//! Every setting is declared once in [`SETTINGS`]; `docs/configuration.md` documents exactly those
//! variables (the xtask tidy test compares the two). A bad value is a [`ConfigError`] whose one-line
//! message names the variable (or file key, or flag) and says what is accepted.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use watchpost_core::TrustedProxies;

/// One configuration setting.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The environment variable.
    pub var: &'static str,
    /// Other variable names accepted (the seed systems' names); the main name wins when both are set.
    pub aliases: &'static [&'static str],
    /// The key in the TOML file.
    pub file_key: &'static str,
    /// The command-line flag that overrides it, if any.
    pub flag: Option<&'static str>,
    /// The default, as documented (`none` when unset by default).
    pub default: &'static str,
    /// Whether the value is a secret (never printed by `check-config` or logs).
    pub secret: bool,
    /// What it means.
    pub meaning: &'static str,
}

macro_rules! setting {
    ($var:literal, [$($alias:literal),*], $key:literal, $flag:expr, $default:literal, $secret:literal, $meaning:literal) => {
        Setting {
            var: $var,
            aliases: &[$($alias),*],
            file_key: $key,
            flag: $flag,
            default: $default,
            secret: $secret,
            meaning: $meaning,
        }
    };
}

/// Every setting the server reads. `docs/configuration.md` must list exactly these variables.
pub const SETTINGS: &[Setting] = &[
    setting!(
        "WATCHPOST_LISTEN",
        [],
        "listen",
        Some("--listen"),
        "0.0.0.0:4000",
        false,
        "listen address; when unset, `PORT` (if set) gives 0.0.0.0:PORT"
    ),
    setting!(
        "PORT",
        [],
        "port",
        None,
        "none",
        false,
        "port to listen on when WATCHPOST_LISTEN is unset (platform convention)"
    ),
    setting!(
        "WATCHPOST_STORE",
        ["STORE_BACKEND"],
        "store",
        Some("--store"),
        "sqlite",
        false,
        "store backend: sqlite, postgres or memory"
    ),
    setting!(
        "WATCHPOST_DATA_DIR",
        [],
        "data_dir",
        Some("--data-dir"),
        "./data",
        false,
        "where the SQLite file, audit files and spool live"
    ),
    setting!(
        "DATABASE_URL",
        [],
        "database_url",
        Some("--database-url"),
        "none",
        true,
        "PostgreSQL URL, required when the store is postgres"
    ),
    setting!(
        "WATCHPOST_DATABASE_POOL_SIZE",
        [],
        "database_pool_size",
        None,
        "16",
        false,
        "maximum connections in the database pool"
    ),
    setting!(
        "WATCHPOST_ROOT_API_KEY",
        ["ROOT_API_KEY"],
        "root_api_key",
        None,
        "none",
        true,
        "root API key; without it (and without a stored root key) root-only endpoints answer 401 to everyone"
    ),
    setting!(
        "WATCHPOST_AUTH_CACHE_TTL_MS",
        [],
        "auth_cache_ttl_ms",
        None,
        "5000",
        false,
        "how long a looked-up API key is cached; a revocation takes effect within this time (0 disables the cache)"
    ),
    setting!(
        "WATCHPOST_TRUSTED_PROXIES",
        [],
        "trusted_proxies",
        None,
        "none",
        false,
        "comma-separated addresses and CIDR blocks of proxies whose Forwarded/X-Forwarded-For headers are believed"
    ),
    setting!(
        "WATCHPOST_BODY_LIMIT_BYTES",
        [],
        "body_limit_bytes",
        None,
        "1048576",
        false,
        "largest request body accepted; larger bodies get 413"
    ),
    setting!(
        "WATCHPOST_SHUTDOWN_GRACE_MS",
        [],
        "shutdown_grace_ms",
        None,
        "20000",
        false,
        "drain time for in-flight requests after SIGTERM or SIGINT"
    ),
    setting!(
        "WATCHPOST_SHUTDOWN_DELAY_MS",
        [],
        "shutdown_delay_ms",
        None,
        "0",
        false,
        "after SIGTERM, how long readiness answers 503 while new connections are still accepted, before the drain"
    ),
    setting!(
        "WATCHPOST_HEALTH_SHOW_DETAILS",
        [],
        "health_show_details",
        None,
        "when_authorized",
        false,
        "who sees check details in /health/detailed: never, when_authorized (root keys) or always"
    ),
    setting!(
        "WATCHPOST_METRICS_TOKEN",
        [],
        "metrics_token",
        None,
        "none",
        true,
        "when set, GET /metrics requires `Authorization: Bearer <token>` (or a root key)"
    ),
    setting!(
        "WATCHPOST_METRICS_NAMING",
        [],
        "metrics_naming",
        None,
        "otel",
        false,
        "HTTP metric names: otel (OpenTelemetry semantic conventions), legacy (http_requests_total and friends) or both"
    ),
    setting!(
        "WATCHPOST_METRICS_MAX_SERIES",
        [],
        "metrics_max_series",
        None,
        "2000",
        false,
        "most series per metric family; further label sets fold into one overflow series"
    ),
    setting!(
        "WATCHPOST_AUDIT_MODE",
        [],
        "audit_mode",
        None,
        "blocking",
        false,
        "how mutating requests are audited: fail_closed (recorded durably before the handler runs, else 503), blocking (the response waits until the event is durable) or async (bounded queue in front of the durable spool)"
    ),
    setting!(
        "WATCHPOST_AUDIT_SIGNING_KEY",
        [],
        "audit_signing_key",
        None,
        "none",
        true,
        "Ed25519 seed (64 hex characters) that signs audit checkpoints; when unset, one is generated into the data dir on first start"
    ),
    setting!(
        "WATCHPOST_AUDIT_REDACTION_KEY",
        [],
        "audit_redaction_key",
        None,
        "none",
        true,
        "HMAC key for redacted secret fields; when unset, the signing seed is used"
    ),
    setting!(
        "WATCHPOST_AUDIT_TRUSTED_KEYS",
        [],
        "audit_trusted_keys",
        None,
        "none",
        false,
        "comma-separated public keys (hex) whose checkpoints verification trusts besides this instance's own (other replicas, rotated keys)"
    ),
    setting!(
        "WATCHPOST_AUDIT_SPOOL_MAX_BYTES",
        [],
        "audit_spool_max_bytes",
        None,
        "1073741824",
        false,
        "size cap of the durable spool used while the database is unreachable"
    ),
    setting!(
        "WATCHPOST_AUDIT_CHECKPOINT_EVERY",
        [],
        "audit_checkpoint_every",
        None,
        "10000",
        false,
        "sign a checkpoint after this many events"
    ),
    setting!(
        "WATCHPOST_AUDIT_CHECKPOINT_INTERVAL_MS",
        [],
        "audit_checkpoint_interval_ms",
        None,
        "60000",
        false,
        "sign a checkpoint at least this often, also when idle"
    ),
    setting!(
        "WATCHPOST_AUDIT_CONSOLE",
        [],
        "audit_console",
        None,
        "false",
        false,
        "also write every audit event as a JSON line on stdout"
    ),
    setting!(
        "WATCHPOST_AUDIT_FILE_DIR",
        [],
        "audit_file_dir",
        None,
        "none",
        false,
        "also write audit events as JSON lines into daily files in this directory (fsync per batch)"
    ),
    setting!(
        "WATCHPOST_AUDIT_FILE_RETENTION_DAYS",
        [],
        "audit_file_retention_days",
        None,
        "0",
        false,
        "delete audit files older than this many days (0 keeps them)"
    ),
    setting!(
        "WATCHPOST_REDIS_URL",
        [],
        "redis_url",
        None,
        "none",
        true,
        "when set, rate limits are shared by every replica through this Redis"
    ),
    setting!(
        "WATCHPOST_RATE_LIMIT_ENABLED",
        ["RATE_LIMIT_ENABLED"],
        "rate_limit_enabled",
        None,
        "true",
        false,
        "whether requests are rate limited"
    ),
    setting!(
        "WATCHPOST_RATE_LIMIT_WINDOW_MS",
        ["RATE_LIMIT_WINDOW_MS"],
        "rate_limit_window_ms",
        None,
        "60000",
        false,
        "window of the default policy, in milliseconds"
    ),
    setting!(
        "WATCHPOST_RATE_LIMIT_MAX_REQUESTS",
        ["RATE_LIMIT_MAX_REQUESTS"],
        "rate_limit_max_requests",
        None,
        "1000",
        false,
        "requests allowed per window and key by the default policy"
    ),
    setting!(
        "WATCHPOST_RATE_LIMIT_SHADOW",
        [],
        "rate_limit_shadow",
        None,
        "false",
        false,
        "decide, log and count, but never block (to try a policy safely)"
    ),
    setting!(
        "WATCHPOST_RATE_LIMIT_REDIS_TIMEOUT_MS",
        [],
        "rate_limit_redis_timeout_ms",
        None,
        "20",
        false,
        "longest wait for one shared decision from Redis, in milliseconds (1 to 10000); then the failure mode decides"
    ),
    setting!(
        "WATCHPOST_RATE_LIMIT_FAILURE_MODE",
        [],
        "rate_limit_failure_mode",
        None,
        "open",
        false,
        "what a decision is when Redis cannot answer in time: open (let the request through) or closed (429)"
    ),
    setting!(
        "WATCHPOST_ALERTMANAGER_TOKEN",
        [],
        "alertmanager_token",
        None,
        "none",
        true,
        "bearer token Alertmanager must send to POST /webhooks/alertmanager; without it the webhook answers 401"
    ),
    setting!(
        "WATCHPOST_ALERTMANAGER_URL",
        [],
        "alertmanager_url",
        None,
        "none",
        false,
        "Alertmanager base URL; when set, open alerts are reconciled from its /api/v2/alerts at start and every minute (recovers resolves lost to truncation)"
    ),
    setting!(
        "WATCHPOST_PUBLIC_URL",
        [],
        "public_url",
        None,
        "none",
        false,
        "this server's public base URL, for links in notifications"
    ),
    setting!(
        "WATCHPOST_STATUS_PAGE_NAME",
        [],
        "status_page_name",
        None,
        "Service status",
        false,
        "the title of the public status page"
    ),
    setting!(
        "WATCHPOST_SLACK_WEBHOOK_URL",
        [],
        "slack_webhook_url",
        None,
        "none",
        true,
        "Slack incoming-webhook URL; enables Slack notifications"
    ),
    setting!(
        "WATCHPOST_PAGERDUTY_ROUTING_KEY",
        [],
        "pagerduty_routing_key",
        None,
        "none",
        true,
        "PagerDuty Events API v2 routing key; enables PagerDuty notifications"
    ),
    setting!(
        "WATCHPOST_SMTP_URL",
        [],
        "smtp_url",
        None,
        "none",
        true,
        "SMTP URL (smtp://host:25, smtps://user:pass@host:465); with WATCHPOST_SMTP_FROM and WATCHPOST_SMTP_TO enables email"
    ),
    setting!(
        "WATCHPOST_SMTP_FROM",
        [],
        "smtp_from",
        None,
        "none",
        false,
        "sender address of notification emails"
    ),
    setting!(
        "WATCHPOST_SMTP_TO",
        [],
        "smtp_to",
        None,
        "none",
        false,
        "comma-separated recipients of notification emails"
    ),
    setting!(
        "WATCHPOST_NOTIFY_WEBHOOK_URL",
        [],
        "notify_webhook_url",
        None,
        "none",
        true,
        "generic webhook receiving every notification as JSON, signed with HMAC-SHA256"
    ),
    setting!(
        "WATCHPOST_NOTIFY_WEBHOOK_SECRET",
        [],
        "notify_webhook_secret",
        None,
        "none",
        true,
        "HMAC-SHA256 key of the generic webhook's signature header (required with its URL)"
    ),
    setting!(
        "WATCHPOST_INCIDENT_OUTBOX_LEASE_MS",
        [],
        "incident_outbox_lease_ms",
        None,
        "60000",
        false,
        "how long the notification worker reserves a claimed outbox entry; after a crash, entries it had claimed are sent again (same Idempotency-Key) once this has passed; keep it above the 10 s notifier timeout when several replicas share a database"
    ),
    setting!(
        "WATCHPOST_INCIDENT_OUTBOX_POLL_MS",
        [],
        "incident_outbox_poll_ms",
        None,
        "2000",
        false,
        "how often the notification worker looks for due outbox entries (retries, entries written by other replicas, expired leases); this process's own changes wake it at once"
    ),
    setting!(
        "WATCHPOST_LOG_FORMAT",
        [],
        "log_format",
        None,
        "json",
        false,
        "log output: json or pretty (filter with RUST_LOG)"
    ),
    setting!(
        "WATCHPOST_LOG_FLUSH_MS",
        [],
        "log_flush_ms",
        None,
        "100",
        false,
        "how long a log line may wait to be written together with others (one write per batch; error lines and 64 KiB batches go at once); 0 writes every line as it is made"
    ),
    setting!(
        "RUST_LOG",
        [],
        "log_filter",
        None,
        "info",
        false,
        "log filter directives, e.g. `info,watchpost_server=debug`"
    ),
];

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The documented default.
    Default,
    /// A key in the TOML file.
    File {
        /// The file.
        path: PathBuf,
        /// The key.
        key: &'static str,
    },
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the default"),
            Source::File { path, key } => write!(f, "key `{key}` in {}", path.display()),
            Source::Env(var) => f.write_str(var),
            Source::Flag(flag) => f.write_str(flag),
        }
    }
}

/// A configuration problem; its message is the one line printed before exiting with status 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse.
    #[error("invalid {origin}={value:?}: {expected}")]
    Invalid {
        /// Where it came from.
        origin: Source,
        /// The value (masked for secrets).
        value: String,
        /// What is accepted.
        expected: String,
    },
    /// A required value is missing.
    #[error("{var} is required: {why}")]
    Missing {
        /// The variable.
        var: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// The TOML file cannot be read or parsed.
    #[error("cannot use config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Embedded SQLite in the data dir (default).
    Sqlite,
    /// PostgreSQL at `DATABASE_URL`.
    Postgres,
    /// In memory: lost on restart; for tests and demos.
    Memory,
}

impl StoreKind {
    /// `sqlite`, `postgres` or `memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
            StoreKind::Memory => "memory",
        }
    }
}

/// Log output format (JSON lines or pretty), shared with watchpost-correlation.
pub use watchpost_correlation::LogFormat;

/// The audit trail's settings.
#[derive(Clone)]
pub struct AuditSettings {
    /// Delivery mode for mutating requests.
    pub mode: watchpost_audit::DeliveryMode,
    /// Checkpoint signing seed (hex).
    pub signing_key: Option<String>,
    /// Redaction HMAC key.
    pub redaction_key: Option<String>,
    /// Extra trusted checkpoint public keys.
    pub trusted_keys: Vec<String>,
    /// Spool size cap.
    pub spool_max_bytes: u64,
    /// Checkpoint every this many events.
    pub checkpoint_every: u64,
    /// Checkpoint at least this often.
    pub checkpoint_interval: Duration,
    /// Console sink on.
    pub console: bool,
    /// File sink directory.
    pub file_dir: Option<PathBuf>,
    /// File sink retention.
    pub file_retention_days: u32,
}

impl fmt::Debug for AuditSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSettings")
            .field("mode", &self.mode)
            .field("signing_key", &self.signing_key.as_ref().map(|_| "<set>"))
            .field(
                "redaction_key",
                &self.redaction_key.as_ref().map(|_| "<set>"),
            )
            .field("trusted_keys", &self.trusted_keys)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("checkpoint_every", &self.checkpoint_every)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("console", &self.console)
            .field("file_dir", &self.file_dir)
            .field("file_retention_days", &self.file_retention_days)
            .finish()
    }
}

fn parse_bool(raw: &RawValues, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match raw.get(var) {
        None => Ok(default),
        Some(v) => match v.0.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(v, false, "expected true or false")),
        },
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn audit_settings(raw: &RawValues) -> Result<AuditSettings, ConfigError> {
    let mode = match raw.get("WATCHPOST_AUDIT_MODE") {
        None => watchpost_audit::DeliveryMode::Blocking,
        Some(v) => {
            v.0.trim()
                .parse()
                .map_err(|_| invalid(v, false, "expected fail_closed, blocking or async"))?
        }
    };
    let signing_key = match raw.get("WATCHPOST_AUDIT_SIGNING_KEY") {
        None => None,
        Some(v) if is_hex(v.0.trim(), 64) => Some(v.0.trim().to_ascii_lowercase()),
        Some(v) => {
            return Err(invalid(
                v,
                true,
                "expected an Ed25519 seed of 64 hex characters (openssl rand -hex 32)",
            ));
        }
    };
    let redaction_key = match raw.get("WATCHPOST_AUDIT_REDACTION_KEY") {
        None => None,
        Some(v) if v.0.len() >= 16 => Some(v.0.clone()),
        Some(v) => {
            return Err(invalid(
                v,
                true,
                "the redaction key must be at least 16 characters",
            ));
        }
    };
    let trusted_keys = match raw.get("WATCHPOST_AUDIT_TRUSTED_KEYS") {
        None => Vec::new(),
        Some(v) => {
            let keys: Vec<String> =
                v.0.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_ascii_lowercase)
                    .collect();
            if let Some(bad) = keys.iter().find(|k| !is_hex(k, 64)) {
                return Err(invalid(
                    v,
                    false,
                    format!("{bad:?} is not an Ed25519 public key of 64 hex characters"),
                ));
            }
            keys
        }
    };
    let checkpoint_every = parse_u64(
        raw,
        "WATCHPOST_AUDIT_CHECKPOINT_EVERY",
        10_000,
        "a number of events",
    )?;
    if checkpoint_every == 0 {
        return Err(invalid(
            raw.get("WATCHPOST_AUDIT_CHECKPOINT_EVERY")
                .expect("set when zero"),
            false,
            "expected a number of events above 0",
        ));
    }
    let interval_ms = parse_u64(
        raw,
        "WATCHPOST_AUDIT_CHECKPOINT_INTERVAL_MS",
        60_000,
        "a number of milliseconds",
    )?;
    if interval_ms < 100 {
        return Err(invalid(
            raw.get("WATCHPOST_AUDIT_CHECKPOINT_INTERVAL_MS")
                .expect("set when small"),
            false,
            "expected at least 100 milliseconds",
        ));
    }
    let retention = parse_u64(
        raw,
        "WATCHPOST_AUDIT_FILE_RETENTION_DAYS",
        0,
        "a number of days",
    )?;
    Ok(AuditSettings {
        mode,
        signing_key,
        redaction_key,
        trusted_keys,
        spool_max_bytes: parse_u64(
            raw,
            "WATCHPOST_AUDIT_SPOOL_MAX_BYTES",
            1 << 30,
            "a number of bytes",
        )?,
        checkpoint_every,
        checkpoint_interval: Duration::from_millis(interval_ms),
        console: parse_bool(raw, "WATCHPOST_AUDIT_CONSOLE", false)?,
        file_dir: raw
            .get("WATCHPOST_AUDIT_FILE_DIR")
            .filter(|v| !v.0.trim().is_empty())
            .map(|v| PathBuf::from(v.0.trim())),
        file_retention_days: u32::try_from(retention).unwrap_or(u32::MAX),
    })
}

/// Incident settings; secrets are masked in `Debug`.
#[derive(Clone, Default)]
pub struct IncidentSettings {
    /// Alertmanager's bearer token.
    pub alertmanager_token: Option<String>,
    /// Alertmanager's base URL, for reconciliation.
    pub alertmanager_url: Option<String>,
    /// Public base URL for links.
    pub public_url: Option<String>,
    /// Status page title.
    pub status_page_name: Option<String>,
    /// Slack incoming webhook.
    pub slack_webhook_url: Option<String>,
    /// PagerDuty routing key.
    pub pagerduty_routing_key: Option<String>,
    /// SMTP URL, sender and recipients.
    pub smtp: Option<(String, String, Vec<String>)>,
    /// Generic webhook URL and secret.
    pub webhook: Option<(String, String)>,
    /// Outbox lease (`WATCHPOST_INCIDENT_OUTBOX_LEASE_MS`); `None` keeps the worker's default (60 s).
    pub outbox_lease: Option<Duration>,
    /// Outbox poll interval (`WATCHPOST_INCIDENT_OUTBOX_POLL_MS`); `None` keeps the worker's default (2 s).
    pub outbox_poll_interval: Option<Duration>,
}

impl fmt::Debug for IncidentSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |o: bool| if o { "<set>" } else { "-" };
        f.debug_struct("IncidentSettings")
            .field(
                "alertmanager_token",
                &set(self.alertmanager_token.is_some()),
            )
            .field("alertmanager_url", &self.alertmanager_url)
            .field("public_url", &self.public_url)
            .field("status_page_name", &self.status_page_name)
            .field("slack", &set(self.slack_webhook_url.is_some()))
            .field("pagerduty", &set(self.pagerduty_routing_key.is_some()))
            .field("smtp", &set(self.smtp.is_some()))
            .field("webhook", &set(self.webhook.is_some()))
            .field("outbox_lease", &self.outbox_lease)
            .field("outbox_poll_interval", &self.outbox_poll_interval)
            .finish()
    }
}

fn text(raw: &RawValues, var: &'static str) -> Option<String> {
    raw.get(var)
        .map(|v| v.0.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn http_url(
    raw: &RawValues,
    var: &'static str,
    secret: bool,
) -> Result<Option<String>, ConfigError> {
    match raw.get(var) {
        Some(v) if !v.0.trim().is_empty() => {
            let url = v.0.trim();
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(Some(url.trim_end_matches('/').to_owned()))
            } else {
                Err(invalid(v, secret, "expected an http:// or https:// URL"))
            }
        }
        _ => Ok(None),
    }
}

fn incident_settings(raw: &RawValues) -> Result<IncidentSettings, ConfigError> {
    let alertmanager_token = match raw.get("WATCHPOST_ALERTMANAGER_TOKEN") {
        Some(v) if !v.0.trim().is_empty() && v.0.trim().len() < 16 => {
            return Err(invalid(
                v,
                true,
                "the Alertmanager token must be at least 16 characters",
            ));
        }
        _ => text(raw, "WATCHPOST_ALERTMANAGER_TOKEN"),
    };
    let smtp = match (
        text(raw, "WATCHPOST_SMTP_URL"),
        text(raw, "WATCHPOST_SMTP_FROM"),
        text(raw, "WATCHPOST_SMTP_TO"),
    ) {
        (None, None, None) => None,
        (Some(url), Some(from), Some(to)) => {
            let to: Vec<String> = to
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect();
            Some((url, from, to))
        }
        _ => {
            return Err(ConfigError::Missing {
                var: "WATCHPOST_SMTP_URL",
                why: "email needs WATCHPOST_SMTP_URL, WATCHPOST_SMTP_FROM and WATCHPOST_SMTP_TO together",
            });
        }
    };
    let webhook = match (
        http_url(raw, "WATCHPOST_NOTIFY_WEBHOOK_URL", true)?,
        text(raw, "WATCHPOST_NOTIFY_WEBHOOK_SECRET"),
    ) {
        (None, _) => None,
        (Some(url), Some(secret)) if secret.len() >= 16 => Some((url, secret)),
        (Some(_), _) => {
            return Err(ConfigError::Missing {
                var: "WATCHPOST_NOTIFY_WEBHOOK_SECRET",
                why: "the generic webhook signs every body: set a secret of at least 16 characters",
            });
        }
    };
    Ok(IncidentSettings {
        alertmanager_token,
        alertmanager_url: http_url(raw, "WATCHPOST_ALERTMANAGER_URL", false)?,
        public_url: http_url(raw, "WATCHPOST_PUBLIC_URL", false)?,
        status_page_name: text(raw, "WATCHPOST_STATUS_PAGE_NAME"),
        slack_webhook_url: http_url(raw, "WATCHPOST_SLACK_WEBHOOK_URL", true)?,
        pagerduty_routing_key: text(raw, "WATCHPOST_PAGERDUTY_ROUTING_KEY"),
        smtp,
        webhook,
        outbox_lease: millis_at_least(raw, "WATCHPOST_INCIDENT_OUTBOX_LEASE_MS", 100)?,
        outbox_poll_interval: millis_at_least(raw, "WATCHPOST_INCIDENT_OUTBOX_POLL_MS", 10)?,
    })
}

/// An optional number of milliseconds, at least `min`; `None` when unset.
fn millis_at_least(
    raw: &RawValues,
    var: &'static str,
    min: u64,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = raw.get(var) else {
        return Ok(None);
    };
    match v.0.trim().parse::<u64>() {
        Ok(ms) if ms >= min => Ok(Some(Duration::from_millis(ms))),
        _ => Err(invalid(
            v,
            false,
            format!("expected a number of milliseconds, at least {min}"),
        )),
    }
}

/// Values given on the command line; `None` leaves the other sources in charge.
#[derive(Debug, Clone, Default)]
pub struct FlagOverrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--store`.
    pub store: Option<String>,
    /// `--data-dir`.
    pub data_dir: Option<String>,
    /// `--database-url`.
    pub database_url: Option<String>,
}

impl FlagOverrides {
    fn get(&self, flag: &str) -> Option<&String> {
        match flag {
            "--listen" => self.listen.as_ref(),
            "--store" => self.store.as_ref(),
            "--data-dir" => self.data_dir.as_ref(),
            "--database-url" => self.database_url.as_ref(),
            _ => None,
        }
    }
}

/// The server's typed configuration.
#[derive(Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// Store backend.
    pub store: StoreKind,
    /// Data directory.
    pub data_dir: PathBuf,
    /// PostgreSQL URL (required for the postgres store).
    pub database_url: Option<String>,
    /// Database pool size.
    pub database_pool_size: usize,
    /// Root API key.
    pub root_api_key: Option<String>,
    /// API key cache lifetime.
    pub auth_cache_ttl: Duration,
    /// Trusted proxies.
    pub trusted_proxies: TrustedProxies,
    /// Request body limit.
    pub body_limit_bytes: usize,
    /// Drain time after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Readiness-off period before the drain.
    pub shutdown_delay: Duration,
    /// Who sees health check details.
    pub health_show_details: watchpost_health::ShowDetails,
    /// Bearer token required by `/metrics`.
    pub metrics_token: Option<String>,
    /// HTTP metric naming.
    pub metrics_naming: watchpost_metrics::HttpNaming,
    /// Most series per metric family.
    pub metrics_max_series: usize,
    /// Audit trail settings.
    pub audit: AuditSettings,
    /// Redis for shared rate limits.
    pub redis_url: Option<String>,
    /// Whether rate limiting is on.
    pub rate_limit_enabled: bool,
    /// The default policy's window.
    pub rate_limit_window: Duration,
    /// The default policy's limit.
    pub rate_limit_max_requests: u64,
    /// Shadow mode.
    pub rate_limit_shadow: bool,
    /// Longest wait for a shared decision from Redis.
    pub rate_limit_redis_timeout: Duration,
    /// What a decision is when Redis cannot answer in time.
    pub rate_limit_failure_mode: watchpost_ratelimit::FailureMode,
    /// Incidents, notifications and the status page.
    pub incident: IncidentSettings,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log_filter: String,
    /// How long a log line may wait for its batch (`WATCHPOST_LOG_FLUSH_MS`; zero: not batched).
    pub log_flush_interval: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("store", &self.store)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_pool_size", &self.database_pool_size)
            .field("root_api_key", &self.root_api_key.as_ref().map(|_| "<set>"))
            .field("auth_cache_ttl", &self.auth_cache_ttl)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("shutdown_delay", &self.shutdown_delay)
            .field("health_show_details", &self.health_show_details)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<set>"),
            )
            .field("metrics_naming", &self.metrics_naming)
            .field("metrics_max_series", &self.metrics_max_series)
            .field("audit", &self.audit)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("rate_limit_enabled", &self.rate_limit_enabled)
            .field("rate_limit_window", &self.rate_limit_window)
            .field("rate_limit_max_requests", &self.rate_limit_max_requests)
            .field("rate_limit_shadow", &self.rate_limit_shadow)
            .field("rate_limit_redis_timeout", &self.rate_limit_redis_timeout)
            .field("rate_limit_failure_mode", &self.rate_limit_failure_mode)
            .field("incident", &self.incident)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("log_flush_interval", &self.log_flush_interval)
            .finish()
    }
}

/// A URL with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Raw values by setting, with where each came from.
#[derive(Debug, Default)]
pub struct RawValues {
    values: BTreeMap<&'static str, (String, Source)>,
}

impl RawValues {
    /// Reads every setting from `file` (if given), the process environment and `flags`.
    pub fn collect(file: Option<&Path>, flags: &FlagOverrides) -> Result<Self, ConfigError> {
        Self::collect_with(file, flags, |name| std::env::var(name).ok())
    }

    /// Like [`collect`](Self::collect) with an injected environment (for tests).
    pub fn collect_with(
        file: Option<&Path>,
        flags: &FlagOverrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let table = match file {
            Some(path) => Some(read_file(path)?),
            None => None,
        };
        let mut raw = RawValues::default();
        for s in SETTINGS {
            let from_flag = s
                .flag
                .and_then(|f| flags.get(f).map(|v| (v.clone(), Source::Flag(f))));
            let from_env = || {
                std::iter::once(s.var)
                    .chain(s.aliases.iter().copied())
                    .find_map(|name| env(name).map(|v| (v, Source::Env(name.to_owned()))))
            };
            let from_file = || {
                let (table, path) = (table.as_ref()?, file?);
                let value = table.get(s.file_key)?;
                let text = match value {
                    toml::Value::String(v) => v.clone(),
                    other => other.to_string(),
                };
                Some((
                    text,
                    Source::File {
                        path: path.to_owned(),
                        key: s.file_key,
                    },
                ))
            };
            if let Some(found) = from_flag.or_else(from_env).or_else(from_file) {
                raw.values.insert(s.var, found);
            }
        }
        Ok(raw)
    }

    fn get(&self, var: &'static str) -> Option<&(String, Source)> {
        self.values.get(var)
    }

    /// The effective value and source of every setting, secrets masked (for `check-config`).
    pub fn describe(&self) -> Vec<(&'static str, String, String)> {
        SETTINGS
            .iter()
            .map(|s| match self.get(s.var) {
                Some((v, src)) => {
                    let shown = if s.secret {
                        if s.var == "DATABASE_URL" {
                            redact_url(v)
                        } else {
                            "<set>".to_owned()
                        }
                    } else {
                        v.clone()
                    };
                    (s.var, shown, src.to_string())
                }
                None => (s.var, s.default.to_owned(), "the default".to_owned()),
            })
            .collect()
    }
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: path.to_owned(),
        reason: format!("{e}; pass an existing file to --config"),
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::File {
            path: path.to_owned(),
            reason: format!("not valid TOML: {}", e.message().trim()),
        })?;
    if let Some(unknown) = table
        .keys()
        .find(|k| !SETTINGS.iter().any(|s| s.file_key == k.as_str()))
    {
        let known: Vec<&str> = SETTINGS.iter().map(|s| s.file_key).collect();
        return Err(ConfigError::File {
            path: path.to_owned(),
            reason: format!("unknown key `{unknown}`; known keys: {}", known.join(", ")),
        });
    }
    Ok(table)
}

fn invalid(raw: &(String, Source), secret: bool, expected: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: raw.1.clone(),
        value: if secret {
            "<secret>".to_owned()
        } else {
            raw.0.clone()
        },
        expected: expected.into(),
    }
}

fn parse_u64(
    raw: &RawValues,
    var: &'static str,
    default: u64,
    what: &str,
) -> Result<u64, ConfigError> {
    match raw.get(var) {
        None => Ok(default),
        Some(v) => {
            v.0.trim()
                .parse::<u64>()
                .map_err(|_| invalid(v, false, format!("expected {what}")))
        }
    }
}

impl Config {
    /// Parses the collected values.
    pub fn from_raw(raw: &RawValues) -> Result<Self, ConfigError> {
        let listen = match (raw.get("WATCHPOST_LISTEN"), raw.get("PORT")) {
            (Some(v), _) => v.0.trim().parse::<SocketAddr>().map_err(|_| {
                invalid(
                    v,
                    false,
                    "expected an address with a port, like 0.0.0.0:4000 or [::]:4000",
                )
            })?,
            (None, Some(v)) => {
                let port =
                    v.0.trim()
                        .parse::<u16>()
                        .map_err(|_| invalid(v, false, "expected a port number from 0 to 65535"))?;
                SocketAddr::from(([0, 0, 0, 0], port))
            }
            (None, None) => SocketAddr::from(([0, 0, 0, 0], 4000)),
        };
        let store = match raw.get("WATCHPOST_STORE") {
            None => StoreKind::Sqlite,
            Some(v) => match v.0.trim().to_ascii_lowercase().as_str() {
                "sqlite" => StoreKind::Sqlite,
                "postgres" | "postgresql" => StoreKind::Postgres,
                "memory" => StoreKind::Memory,
                _ => return Err(invalid(v, false, "expected sqlite, postgres or memory")),
            },
        };
        let data_dir = raw
            .get("WATCHPOST_DATA_DIR")
            .map(|v| PathBuf::from(&v.0))
            .unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = match raw.get("DATABASE_URL") {
            Some(v) if !v.0.trim().is_empty() => {
                let url = v.0.trim();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(ConfigError::Invalid {
                        origin: v.1.clone(),
                        value: redact_url(url),
                        expected: "expected a URL like postgres://user:password@host:5432/dbname"
                            .to_owned(),
                    });
                }
                url.parse::<tokio_postgres::Config>()
                    .map_err(|e| ConfigError::Invalid {
                        origin: v.1.clone(),
                        value: redact_url(url),
                        expected: format!("not a PostgreSQL URL ({e})"),
                    })?;
                Some(url.to_owned())
            }
            _ => None,
        };
        if store == StoreKind::Postgres && database_url.is_none() {
            return Err(ConfigError::Missing {
                var: "DATABASE_URL",
                why: "WATCHPOST_STORE=postgres needs it, e.g. postgres://watchpost@127.0.0.1:5432/watchpost",
            });
        }
        let database_pool_size = parse_u64(
            raw,
            "WATCHPOST_DATABASE_POOL_SIZE",
            16,
            "a pool size from 1 to 1000",
        )?;
        if !(1..=1000).contains(&database_pool_size) {
            return Err(invalid(
                raw.get("WATCHPOST_DATABASE_POOL_SIZE")
                    .expect("set when out of range"),
                false,
                "expected a pool size from 1 to 1000",
            ));
        }
        let root_api_key = match raw.get("WATCHPOST_ROOT_API_KEY") {
            Some(v) if v.0.is_empty() => None,
            Some(v) if v.0.len() < 16 => {
                return Err(invalid(
                    v,
                    true,
                    "the root key must be at least 16 characters; generate one with `openssl rand -hex 32`",
                ));
            }
            Some(v) => Some(v.0.clone()),
            None => None,
        };
        let auth_cache_ttl = Duration::from_millis(parse_u64(
            raw,
            "WATCHPOST_AUTH_CACHE_TTL_MS",
            5000,
            "a number of milliseconds",
        )?);
        let trusted_proxies = match raw.get("WATCHPOST_TRUSTED_PROXIES") {
            None => TrustedProxies::none(),
            Some(v) => {
                TrustedProxies::parse_list(&v.0).map_err(|e| invalid(v, false, e.to_string()))?
            }
        };
        let body_limit = parse_u64(
            raw,
            "WATCHPOST_BODY_LIMIT_BYTES",
            1024 * 1024,
            "a number of bytes",
        )?;
        if body_limit == 0 {
            return Err(invalid(
                raw.get("WATCHPOST_BODY_LIMIT_BYTES")
                    .expect("set when zero"),
                false,
                "expected a number of bytes above 0",
            ));
        }
        let shutdown_grace = Duration::from_millis(parse_u64(
            raw,
            "WATCHPOST_SHUTDOWN_GRACE_MS",
            20_000,
            "a number of milliseconds",
        )?);
        let shutdown_delay = Duration::from_millis(parse_u64(
            raw,
            "WATCHPOST_SHUTDOWN_DELAY_MS",
            0,
            "a number of milliseconds",
        )?);
        let health_show_details = match raw.get("WATCHPOST_HEALTH_SHOW_DETAILS") {
            None => watchpost_health::ShowDetails::default(),
            Some(v) => {
                v.0.trim()
                    .parse()
                    .map_err(|_| invalid(v, false, "expected never, when_authorized or always"))?
            }
        };
        let metrics_token = match raw.get("WATCHPOST_METRICS_TOKEN") {
            None => None,
            Some(v) if v.0.trim().is_empty() => None,
            Some(v) if v.0.len() < 16 => {
                return Err(invalid(
                    v,
                    true,
                    "the metrics token must be at least 16 characters",
                ));
            }
            Some(v) => Some(v.0.trim().to_owned()),
        };
        let metrics_naming = match raw.get("WATCHPOST_METRICS_NAMING") {
            None => watchpost_metrics::HttpNaming::OpenTelemetry,
            Some(v) => match v.0.trim().to_ascii_lowercase().as_str() {
                "otel" | "opentelemetry" => watchpost_metrics::HttpNaming::OpenTelemetry,
                "legacy" => watchpost_metrics::HttpNaming::Legacy,
                "both" => watchpost_metrics::HttpNaming::Both,
                _ => return Err(invalid(v, false, "expected otel, legacy or both")),
            },
        };
        let metrics_max_series = parse_u64(
            raw,
            "WATCHPOST_METRICS_MAX_SERIES",
            2000,
            "a number of series",
        )?;
        if !(1..=1_000_000).contains(&metrics_max_series) {
            return Err(invalid(
                raw.get("WATCHPOST_METRICS_MAX_SERIES")
                    .expect("set when out of range"),
                false,
                "expected a number of series from 1 to 1000000",
            ));
        }
        let audit = audit_settings(raw)?;
        let redis_url = match raw.get("WATCHPOST_REDIS_URL") {
            None => None,
            Some(v) if v.0.trim().is_empty() => None,
            Some(v) => {
                let url = v.0.trim();
                if !(url.starts_with("redis://")
                    || url.starts_with("rediss://")
                    || url.starts_with("redis+unix://"))
                {
                    return Err(ConfigError::Invalid {
                        origin: v.1.clone(),
                        value: redact_url(url),
                        expected: "expected a URL like redis://host:6379/0".to_owned(),
                    });
                }
                Some(url.to_owned())
            }
        };
        let rate_limit_window_ms = parse_u64(
            raw,
            "WATCHPOST_RATE_LIMIT_WINDOW_MS",
            60_000,
            "a number of milliseconds",
        )?;
        let rate_limit_max_requests = parse_u64(
            raw,
            "WATCHPOST_RATE_LIMIT_MAX_REQUESTS",
            1000,
            "a number of requests",
        )?;
        if rate_limit_window_ms == 0 {
            return Err(invalid(
                raw.get("WATCHPOST_RATE_LIMIT_WINDOW_MS")
                    .expect("set when zero"),
                false,
                "expected a window above 0 milliseconds",
            ));
        }
        if rate_limit_max_requests == 0 {
            return Err(invalid(
                raw.get("WATCHPOST_RATE_LIMIT_MAX_REQUESTS")
                    .expect("set when zero"),
                false,
                "expected at least 1 request (disable limiting with WATCHPOST_RATE_LIMIT_ENABLED=false)",
            ));
        }
        let rate_limit_redis_timeout_ms = parse_u64(
            raw,
            "WATCHPOST_RATE_LIMIT_REDIS_TIMEOUT_MS",
            20,
            "a number of milliseconds",
        )?;
        if !(1..=10_000).contains(&rate_limit_redis_timeout_ms) {
            return Err(invalid(
                raw.get("WATCHPOST_RATE_LIMIT_REDIS_TIMEOUT_MS")
                    .expect("set when out of range"),
                false,
                "expected a timeout from 1 to 10000 milliseconds",
            ));
        }
        let rate_limit_failure_mode = match raw.get("WATCHPOST_RATE_LIMIT_FAILURE_MODE") {
            None => watchpost_ratelimit::FailureMode::FailOpen,
            Some(v) => match v.0.trim().to_ascii_lowercase().as_str() {
                "open" => watchpost_ratelimit::FailureMode::FailOpen,
                "closed" => watchpost_ratelimit::FailureMode::FailClosed,
                _ => return Err(invalid(v, false, "expected open or closed")),
            },
        };
        let log_format = match raw.get("WATCHPOST_LOG_FORMAT") {
            None => LogFormat::Json,
            Some(v) => match v.0.trim().to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "pretty" | "text" => LogFormat::Pretty,
                _ => return Err(invalid(v, false, "expected json or pretty")),
            },
        };
        let log_filter = match raw.get("RUST_LOG") {
            None => "info".to_owned(),
            Some(v) => {
                tracing_subscriber::EnvFilter::try_new(&v.0)
                    .map_err(|e| invalid(v, false, format!("not a log filter ({e})")))?;
                v.0.clone()
            }
        };
        let log_flush_interval = match raw.get("WATCHPOST_LOG_FLUSH_MS") {
            None => watchpost_correlation::output::DEFAULT_FLUSH_INTERVAL,
            Some(v) => watchpost_correlation::logging::parse_flush_ms(&v.0).map_err(|_| {
                invalid(
                    v,
                    false,
                    format!(
                        "expected whole milliseconds from 0 (every line at once) to {}",
                        watchpost_correlation::output::MAX_FLUSH_INTERVAL.as_millis()
                    ),
                )
            })?,
        };
        Ok(Config {
            listen,
            store,
            data_dir,
            database_url,
            database_pool_size: database_pool_size as usize,
            root_api_key,
            auth_cache_ttl,
            trusted_proxies,
            body_limit_bytes: usize::try_from(body_limit).unwrap_or(usize::MAX),
            shutdown_grace,
            shutdown_delay,
            health_show_details,
            metrics_token,
            metrics_naming,
            metrics_max_series: metrics_max_series as usize,
            audit,
            redis_url,
            rate_limit_enabled: parse_bool(raw, "WATCHPOST_RATE_LIMIT_ENABLED", true)?,
            rate_limit_window: Duration::from_millis(rate_limit_window_ms),
            rate_limit_max_requests,
            rate_limit_shadow: parse_bool(raw, "WATCHPOST_RATE_LIMIT_SHADOW", false)?,
            rate_limit_redis_timeout: Duration::from_millis(rate_limit_redis_timeout_ms),
            rate_limit_failure_mode,
            incident: incident_settings(raw)?,
            log_format,
            log_filter,
            log_flush_interval,
        })
    }

    /// Reads and parses the configuration from `file`, the environment and `flags`.
    pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Self, ConfigError> {
        Self::from_raw(&RawValues::collect(file, flags)?)
    }

    /// A configuration for tests: memory store, loopback on an ephemeral port, no keys.
    pub fn for_tests() -> Self {
        let raw = RawValues::collect_with(None, &FlagOverrides::default(), |name| match name {
            "WATCHPOST_LISTEN" => Some("127.0.0.1:0".to_owned()),
            "WATCHPOST_STORE" => Some("memory".to_owned()),
            _ => None,
        })
        .expect("no file is read");
        Self::from_raw(&raw).expect("test defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let raw = RawValues::collect_with(None, &FlagOverrides::default(), |n| {
            vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone())
        })?;
        Config::from_raw(&raw)
    }

    /// The message `vars` are refused with.
    fn refusal(vars: &[(&str, &str)]) -> String {
        match load(vars) {
            Ok(_) => panic!("{vars:?} were accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults() {
        let c = load(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:4000");
        assert_eq!(c.store, StoreKind::Sqlite);
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.body_limit_bytes, 1 << 20);
        assert_eq!(c.shutdown_grace, Duration::from_secs(20));
    }

    #[test]
    fn redis_timeout_and_failure_mode() {
        let c = load(&[]).unwrap();
        assert_eq!(c.rate_limit_redis_timeout, Duration::from_millis(20));
        assert_eq!(
            c.rate_limit_failure_mode,
            watchpost_ratelimit::FailureMode::FailOpen
        );
        let c = load(&[
            ("WATCHPOST_RATE_LIMIT_REDIS_TIMEOUT_MS", "250"),
            ("WATCHPOST_RATE_LIMIT_FAILURE_MODE", "Closed"),
        ])
        .unwrap();
        assert_eq!(c.rate_limit_redis_timeout, Duration::from_millis(250));
        assert_eq!(
            c.rate_limit_failure_mode,
            watchpost_ratelimit::FailureMode::FailClosed
        );
    }

    #[test]
    fn port_and_aliases() {
        let c = load(&[
            ("PORT", "8080"),
            ("STORE_BACKEND", "memory"),
            ("ROOT_API_KEY", "0123456789abcdef"),
        ])
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.store, StoreKind::Memory);
        assert!(c.root_api_key.is_some());
        // The main name wins over the alias.
        let c = load(&[("WATCHPOST_STORE", "sqlite"), ("STORE_BACKEND", "memory")]).unwrap();
        assert_eq!(c.store, StoreKind::Sqlite);
    }

    #[test]
    fn errors_name_the_variable() {
        // (variables, what the message is, or starts with when it ends in `…`)
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("WATCHPOST_STORE", "mongo")],
                r#"invalid WATCHPOST_STORE="mongo": expected sqlite, postgres or memory"#,
            ),
            (
                &[("WATCHPOST_STORE", "postgres")],
                "DATABASE_URL is required…",
            ),
            (
                &[("WATCHPOST_LISTEN", "nope")],
                r#"invalid WATCHPOST_LISTEN="nope"…"#,
            ),
            (
                &[("WATCHPOST_RATE_LIMIT_REDIS_TIMEOUT_MS", "0")],
                r#"invalid WATCHPOST_RATE_LIMIT_REDIS_TIMEOUT_MS="0": expected a timeout from 1 to 10000 milliseconds"#,
            ),
            (
                &[("WATCHPOST_RATE_LIMIT_FAILURE_MODE", "maybe")],
                r#"invalid WATCHPOST_RATE_LIMIT_FAILURE_MODE="maybe": expected open or closed"#,
            ),
        ];
        for (vars, expected) in cases {
            let e = refusal(vars);
            match expected.strip_suffix('…') {
                Some(prefix) => assert!(e.starts_with(prefix), "{vars:?}: {e}"),
                None => assert_eq!(&e, expected, "{vars:?}"),
            }
        }
        // Secrets are named, never echoed.
        for (vars, secret) in [
            (("DATABASE_URL", "mysql://x:secret@h/db"), "secret"),
            (("WATCHPOST_ROOT_API_KEY", "short"), "short"),
        ] {
            let e = refusal(&[vars]);
            assert!(e.contains(vars.0) && !e.contains(secret), "{e}");
        }
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        std::fs::write(
            &path,
            "store = \"memory\"\nlisten = \"127.0.0.1:1\"\nshutdown_grace_ms = 5\n",
        )
        .unwrap();
        let flags = FlagOverrides {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let raw = RawValues::collect_with(Some(&path), &flags, |n| {
            (n == "WATCHPOST_STORE").then(|| "sqlite".to_owned())
        })
        .unwrap();
        let c = Config::from_raw(&raw).unwrap();
        assert_eq!(c.store, StoreKind::Sqlite);
        assert_eq!(c.listen.to_string(), "127.0.0.1:3");
        assert_eq!(c.shutdown_grace, Duration::from_millis(5));

        std::fs::write(&path, "stor = \"memory\"\n").unwrap();
        let e =
            RawValues::collect_with(Some(&path), &FlagOverrides::default(), |_| None).unwrap_err();
        assert!(e.to_string().contains("unknown key `stor`"), "{e}");
        std::fs::write(&path, "store = \n").unwrap();
        let e =
            RawValues::collect_with(Some(&path), &FlagOverrides::default(), |_| None).unwrap_err();
        assert!(e.to_string().contains("not valid TOML"), "{e}");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/d"),
            "postgres://u:***@h:5432/d"
        );
        assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
    }
}
