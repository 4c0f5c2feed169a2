//! [`IncidentService`]: the store, policies, clock, metrics and hooks that the router and the
//! outbox worker share, and [`IncidentConfig`], the plain settings the server maps env vars onto.

use std::fmt;
use std::sync::Arc;

use watchpost_core::{Principal, RequestContext, SharedClock, SystemClock};

use crate::alertmanager::WebhookPayload;
use crate::engine::{ApplyContext, Changes, IncidentOp, NewIncident};
use crate::error::IncidentError;
use crate::metrics::IncidentMetrics;
use crate::model::{Actor, Incident};
use crate::outbox::Origin;
use crate::policy::IncidentPolicy;
use crate::store::SharedStore;

/// Least time between two recounts of the open incidents caused by changes (see `recount_due`).
const RECOUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Default largest webhook body: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Plain settings (the server maps environment variables onto these fields).
#[derive(Clone)]
pub struct IncidentConfig {
    /// Bearer token Alertmanager must send (`WATCHPOST_ALERTMANAGER_TOKEN`); without it and
    /// without basic credentials the webhook answers 401 to everyone.
    pub alertmanager_token: Option<String>,
    /// Basic-auth user and password Alertmanager may send instead.
    pub alertmanager_basic_auth: Option<(String, String)>,
    /// Policies.
    pub policy: IncidentPolicy,
    /// Base URL of this server as people reach it (links in notifications), e.g. `https://ops.example.com`.
    pub public_url: Option<String>,
    /// Status page title.
    pub status_page_name: String,
    /// Seconds between status page refreshes.
    pub status_refresh_seconds: u32,
    /// Largest webhook body (default 1 MiB).
    pub max_body_bytes: usize,
    /// Settings of the outbox worker that delivers this service's notifications (the server
    /// maps `WATCHPOST_INCIDENT_OUTBOX_LEASE_MS` and `WATCHPOST_INCIDENT_OUTBOX_POLL_MS` onto it).
    pub outbox: crate::worker::OutboxWorkerConfig,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            alertmanager_token: None,
            alertmanager_basic_auth: None,
            policy: IncidentPolicy::default(),
            public_url: None,
            status_page_name: "Service status".to_owned(),
            status_refresh_seconds: 60,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            outbox: crate::worker::OutboxWorkerConfig::default(),
        }
    }
}

impl fmt::Debug for IncidentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secrets.
        f.debug_struct("IncidentConfig")
            .field(
                "alertmanager_token",
                &self.alertmanager_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "alertmanager_basic_auth",
                &self
                    .alertmanager_basic_auth
                    .as_ref()
                    .map(|(u, _)| (u, "<redacted>")),
            )
            .field("policy", &self.policy)
            .field("public_url", &self.public_url)
            .field("status_page_name", &self.status_page_name)
            .field("status_refresh_seconds", &self.status_refresh_seconds)
            .field("outbox", &self.outbox)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// A change made through the API, handed to the mutation hook (the server records it in the audit trail).
#[derive(Debug, Clone)]
pub struct IncidentMutation {
    /// `incident.create`, `incident.acknowledge`, `incident.resolve` or `incident.update`.
    pub action: &'static str,
    /// The incident, when known.
    pub incident_id: Option<String>,
    /// Who asked.
    pub principal: Option<Principal>,
    /// The request, when the correlation layer put one in the extensions.
    pub context: Option<RequestContext>,
    /// The HTTP status answered.
    pub status: u16,
}

/// Called after every API mutation (success or failure).
pub type MutationHook = Arc<dyn Fn(&IncidentMutation) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) store: SharedStore,
    pub(crate) config: IncidentConfig,
    pub(crate) policy: Arc<IncidentPolicy>,
    pub(crate) clock: SharedClock,
    pub(crate) metrics: IncidentMetrics,
    pub(crate) on_mutation: Option<MutationHook>,
    pub(crate) outbox_ready: tokio::sync::Notify,
    pub(crate) last_recount: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// The incident service; cheap to clone.
#[derive(Clone)]
pub struct IncidentService {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for IncidentService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncidentService")
            .field("store", &self.inner.store)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Builds an [`IncidentService`].
pub struct IncidentServiceBuilder {
    store: SharedStore,
    config: IncidentConfig,
    clock: SharedClock,
    on_mutation: Option<MutationHook>,
    channels: Option<Vec<crate::model::Channel>>,
}

impl fmt::Debug for IncidentServiceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncidentServiceBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl IncidentServiceBuilder {
    /// Sets the configuration.
    #[must_use]
    pub fn config(mut self, config: IncidentConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock (tests use `ManualClock`).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The channels that have a notifier: routing is restricted to them, so no outbox row is
    /// written for a channel nobody delivers (it would only fail, and fill the store). Without this
    /// call every routed channel gets rows, for a worker configured elsewhere.
    #[must_use]
    pub fn channels(mut self, channels: &[crate::model::Channel]) -> Self {
        self.channels = Some(channels.to_vec());
        self
    }

    /// Sets the hook called after every API mutation.
    #[must_use]
    pub fn on_mutation(mut self, hook: MutationHook) -> Self {
        self.on_mutation = Some(hook);
        self
    }

    /// Builds the service.
    pub fn build(mut self) -> IncidentService {
        if let Some(channels) = &self.channels {
            self.config.policy.routing = self.config.policy.routing.restricted_to(channels);
        }
        IncidentService {
            inner: Arc::new(Inner {
                store: self.store,
                policy: Arc::new(self.config.policy.clone()),
                config: self.config,
                clock: self.clock,
                metrics: IncidentMetrics::default(),
                on_mutation: self.on_mutation,
                outbox_ready: tokio::sync::Notify::new(),
                last_recount: std::sync::Mutex::new(None),
            }),
        }
    }
}

impl IncidentService {
    /// A builder over `store` with default configuration and the system clock.
    pub fn builder(store: SharedStore) -> IncidentServiceBuilder {
        IncidentServiceBuilder {
            store,
            config: IncidentConfig::default(),
            clock: SystemClock::shared(),
            on_mutation: None,
            channels: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &IncidentConfig {
        &self.inner.config
    }

    /// The metrics (shared with every clone).
    pub fn metrics(&self) -> &IncidentMetrics {
        &self.inner.metrics
    }

    /// Registers this crate's metrics into `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    pub(crate) fn context(&self, origin: Option<Origin>) -> ApplyContext {
        ApplyContext {
            policy: self.inner.policy.clone(),
            now: self.inner.clock.now(),
            origin,
        }
    }

    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.clock.now()
    }

    async fn after(&self, changes: &Changes) {
        self.inner.metrics.transitions(&changes.transitions);
        if !changes.outbox.is_empty() {
            self.inner.outbox_ready.notify_waiters();
        }
        if !changes.transitions.is_empty() && self.recount_due() {
            self.refresh_open_gauge().await;
        }
    }

    /// Whether the open-incident gauge should be recounted from the store now. Counting scans
    /// every open incident, so it happens at most every [`RECOUNT_EVERY`]; in between, each
    /// change moves the gauge by its own transitions (and the worker recounts every 15 s, which
    /// also picks up other replicas' changes).
    fn recount_due(&self) -> bool {
        let now = tokio::time::Instant::now();
        let mut last = self
            .inner
            .last_recount
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < RECOUNT_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Re-reads the open incident counts into the `watchpost_incidents_open` gauge.
    pub async fn refresh_open_gauge(&self) {
        match self.inner.store.open_counts().await {
            Ok(counts) => self.inner.metrics.set_open(&counts),
            Err(e) => tracing::warn!(error = %e, "cannot refresh the open incident gauge"),
        }
    }

    /// Applies a webhook delivery durably; returns what changed (empty for a duplicate).
    pub async fn ingest(
        &self,
        payload: WebhookPayload,
        origin: Option<Origin>,
    ) -> Result<Changes, IncidentError> {
        let changes = self
            .inner
            .store
            .apply_delivery(Arc::new(payload), self.context(origin))
            .await?;
        self.after(&changes).await;
        Ok(changes)
    }

    /// Opens a manual incident.
    pub async fn create(
        &self,
        new: NewIncident,
        actor: Actor,
        origin: Option<Origin>,
    ) -> Result<Incident, IncidentError> {
        let (incident, changes) = self
            .inner
            .store
            .create(new, actor, self.context(origin))
            .await?;
        self.after(&changes).await;
        Ok(incident)
    }

    /// Acknowledges, resolves or updates an incident.
    pub async fn apply(
        &self,
        id: &str,
        op: IncidentOp,
        actor: Actor,
        origin: Option<Origin>,
    ) -> Result<Incident, IncidentError> {
        let (incident, changes) = self
            .inner
            .store
            .apply_op(id.to_owned(), op, actor, self.context(origin))
            .await?;
        self.after(&changes).await;
        Ok(incident)
    }

    pub(crate) fn mutation(&self, m: IncidentMutation) {
        if let Some(hook) = &self.inner.on_mutation {
            hook(&m);
        }
    }

    /// Resolves when new outbox entries were written by this process (the worker waits on it).
    pub(crate) async fn outbox_ready(&self) {
        self.inner.outbox_ready.notified().await;
    }
}
