//! [`OutboxWorker`]: claims due outbox entries, delivers them through the [`Notifier`]s, retries
//! with exponential backoff and jitter, and spaces requests per destination.
//!
//! Entries are claimed with a lease (other replicas skip them until it ends), delivered, then
//! marked in the store; a delivered entry is never sent again. A process killed between sending
//! and marking resends that one entry after the lease, with the same `Idempotency-Key`
//! (PagerDuty also deduplicates by `dedup_key`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::Channel;
use crate::notify::{HeaderHook, Notifier, NotifyError};
use crate::outbox::{DeliveryResult, OutboxEntry};
use crate::service::IncidentService;

/// How often the worker re-reads the open incident counts for `watchpost_incidents_open`.
const GAUGE_REFRESH: Duration = Duration::from_secs(15);

/// How often the worker prunes old alert event keys.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Worker settings.
#[derive(Debug, Clone)]
pub struct OutboxWorkerConfig {
    /// How often to look for due entries when nothing wakes the worker.
    pub poll_interval: Duration,
    /// How long a claimed entry is reserved for this worker.
    pub lease: Duration,
    /// Entries claimed per round.
    pub batch: usize,
    /// Attempts before an entry is marked failed.
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Least time between two requests to the same channel (PagerDuty 120/min, Slack 1/s by default).
    pub min_interval: HashMap<Channel, Duration>,
    /// How long alert event keys are kept for deduplication (default 7 days); pruned hourly.
    pub event_retention: Duration,
}

impl Default for OutboxWorkerConfig {
    fn default() -> Self {
        let mut min_interval = HashMap::new();
        min_interval.insert(Channel::PagerDuty, Duration::from_millis(500));
        min_interval.insert(Channel::Slack, Duration::from_secs(1));
        Self {
            poll_interval: Duration::from_secs(2),
            lease: Duration::from_secs(60),
            batch: 64,
            max_attempts: 12,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(600),
            min_interval,
            event_retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Delivers the outbox.
#[derive(Clone)]
pub struct OutboxWorker {
    service: IncidentService,
    notifiers: HashMap<Channel, Arc<dyn Notifier>>,
    header_hook: Option<HeaderHook>,
    config: OutboxWorkerConfig,
    next_slot: Arc<Mutex<HashMap<Channel, tokio::time::Instant>>>,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("notifiers", &self.notifiers)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The retry delay after `attempts` attempts: `base * 2^(attempts-1)` capped at `max`, with jitter in its upper half.
pub fn backoff(attempts: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempts.saturating_sub(1).min(20));
    let d = exp.min(max);
    let half = d / 2;
    half + Duration::from_millis(rand::rng().random_range(0..=half.as_millis().max(1) as u64))
}

impl OutboxWorker {
    /// A worker for `service` without notifiers yet.
    pub fn new(service: IncidentService, config: OutboxWorkerConfig) -> Self {
        Self {
            service,
            notifiers: HashMap::new(),
            header_hook: None,
            config,
            next_slot: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Adds a notifier (one per channel; a later one replaces an earlier one).
    #[must_use]
    pub fn notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.insert(notifier.channel(), notifier);
        self
    }

    /// Sets the hook that adds headers (trace context, correlation id) to outgoing requests.
    #[must_use]
    pub fn header_hook(mut self, hook: HeaderHook) -> Self {
        self.header_hook = Some(hook);
        self
    }

    /// Channels with a notifier.
    pub fn channels(&self) -> Vec<Channel> {
        let mut c: Vec<Channel> = self.notifiers.keys().copied().collect();
        c.sort();
        c
    }

    async fn wait_slot(&self, channel: Channel) {
        let Some(interval) = self.config.min_interval.get(&channel).copied() else {
            return;
        };
        let at = {
            let mut slots = self.next_slot.lock().await;
            let now = tokio::time::Instant::now();
            let slot = slots.get(&channel).copied().unwrap_or(now).max(now);
            slots.insert(channel, slot + interval);
            slot
        };
        tokio::time::sleep_until(at).await;
    }

    async fn deliver(&self, entry: OutboxEntry) -> Result<(), crate::IncidentError> {
        let channel = entry.notification.channel;
        let result = match self.notifiers.get(&channel) {
            None => DeliveryResult::Failed {
                error: format!("no notifier is configured for channel {}", channel.as_str()),
            },
            Some(notifier) => {
                self.wait_slot(channel).await;
                let headers = self
                    .header_hook
                    .as_ref()
                    .map(|h| h(&entry.notification))
                    .unwrap_or_default();
                match notifier.send(&entry.notification, headers).await {
                    Ok(()) => DeliveryResult::Delivered,
                    Err(NotifyError::Permanent(error)) => DeliveryResult::Failed { error },
                    Err(NotifyError::Retryable { reason, .. })
                        if entry.attempts >= self.config.max_attempts =>
                    {
                        DeliveryResult::Failed {
                            error: format!("gave up after {} attempts: {reason}", entry.attempts),
                        }
                    }
                    Err(NotifyError::Retryable {
                        reason,
                        retry_after,
                    }) => {
                        let delay = backoff(
                            entry.attempts,
                            self.config.backoff_base,
                            self.config.backoff_max,
                        )
                        .max(retry_after.unwrap_or_default().min(self.config.backoff_max));
                        let at = self.service.now()
                            + chrono::Duration::from_std(delay)
                                .unwrap_or(chrono::Duration::seconds(60));
                        DeliveryResult::Retry { at, error: reason }
                    }
                }
            }
        };
        match &result {
            DeliveryResult::Delivered => {
                tracing::info!(channel = channel.as_str(), incident = %entry.notification.incident.id, kind = entry.notification.kind.as_str(), "notification delivered");
                self.service.metrics().notification(channel, true);
            }
            DeliveryResult::Failed { error } => {
                tracing::warn!(channel = channel.as_str(), incident = %entry.notification.incident.id, %error, "notification failed; not retrying");
                self.service.metrics().notification(channel, false);
            }
            DeliveryResult::Retry { error, at } => {
                tracing::info!(channel = channel.as_str(), incident = %entry.notification.incident.id, %error, retry_at = %at, "notification will be retried");
            }
        }
        self.service
            .store()
            .complete_outbox(entry, result, self.service.now())
            .await
    }

    /// Claims and delivers one batch; returns how many entries were attempted.
    pub async fn run_once(&self) -> Result<usize, crate::IncidentError> {
        let entries = self
            .service
            .store()
            .claim_outbox(self.service.now(), self.config.lease, self.config.batch)
            .await?;
        let n = entries.len();
        let mut by_channel: HashMap<Channel, Vec<OutboxEntry>> = HashMap::new();
        for e in entries {
            by_channel
                .entry(e.notification.channel)
                .or_default()
                .push(e);
        }
        // Channels in parallel, each in order, so a slow destination does not hold up the others.
        let runs = by_channel.into_values().map(|entries| async move {
            for e in entries {
                if let Err(err) = self.deliver(e).await {
                    tracing::error!(error = %err, "cannot record a notification result; it will be retried after its lease");
                }
            }
        });
        futures_util::future::join_all(runs).await;
        Ok(n)
    }

    /// Runs until `shutdown()`; the returned handle stops it.
    pub fn spawn(self) -> OutboxWorkerHandle {
        let token = CancellationToken::new();
        let stop = token.clone();
        let join = tokio::spawn(async move {
            // The open-incident gauge also reflects other replicas' changes: refresh it now and then.
            let mut gauge_refreshed = tokio::time::Instant::now() - GAUGE_REFRESH;
            let mut pruned = tokio::time::Instant::now();
            loop {
                if gauge_refreshed.elapsed() >= GAUGE_REFRESH {
                    self.service.refresh_open_gauge().await;
                    gauge_refreshed = tokio::time::Instant::now();
                }
                if pruned.elapsed() >= PRUNE_EVERY {
                    let retention = chrono::Duration::from_std(self.config.event_retention)
                        .unwrap_or(chrono::Duration::days(7));
                    match self
                        .service
                        .store()
                        .prune_events(self.service.now() - retention)
                        .await
                    {
                        Ok(n) if n > 0 => tracing::info!(pruned = n, "forgot old alert event keys"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "cannot prune alert event keys"),
                    }
                    pruned = tokio::time::Instant::now();
                }
                let worked = match self.run_once().await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox round failed");
                        0
                    }
                };
                if worked > 0 {
                    if stop.is_cancelled() {
                        break;
                    }
                    continue;
                }
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                    () = self.service.outbox_ready() => {}
                }
            }
        });
        OutboxWorkerHandle { token, join }
    }
}

/// Stops a spawned [`OutboxWorker`].
#[derive(Debug)]
pub struct OutboxWorkerHandle {
    token: CancellationToken,
    join: JoinHandle<()>,
}

impl OutboxWorkerHandle {
    /// Stops after the current round (entries in flight finish and are recorded).
    pub async fn shutdown(self) {
        self.token.cancel();
        let _ = self.join.await;
    }
}
