//! [`HealthRegistry`]: the registered checks, how they run (concurrently, each bounded by its
//! timeout, panics caught, single flight, cached or in the background) and the reports the
//! endpoints render.

use std::collections::BTreeSet;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use prometheus_client::registry::Registry;
// Tokio's clock: paused and advanced by tests (background mode, staleness, caching).
use tokio::time::Instant;
use watchpost_core::{HealthStatus, SharedClock, SystemClock};

use crate::check::{Check, CheckOutcome, Observation};
use crate::config::HealthConfig;
use crate::error::{HealthError, valid_name};
use crate::lifecycle::{Lifecycle, LifecyclePhase};
use crate::metrics::CheckMetrics;

/// How many background intervals a result may age before it counts as `fail` ("stale").
pub const STALE_AFTER_INTERVALS: u32 = 3;

/// A probe: which checks a request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// The checks marked for liveness (by default none); ignores the lifecycle.
    Liveness,
    /// The checks marked for readiness, gated by the [`Lifecycle`].
    Readiness,
    /// Every registered check.
    Detailed,
}

impl Probe {
    /// `livez`, `readyz` or `healthz`: the word in the verbose output's last line.
    pub fn verbose_word(self) -> &'static str {
        match self {
            Probe::Liveness => "livez",
            Probe::Readiness => "readyz",
            Probe::Detailed => "healthz",
        }
    }
}

/// The result of one check as a report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// The check's name.
    pub name: String,
    /// Whether the check is critical.
    pub critical: bool,
    /// The draft's `componentType`.
    pub component_type: String,
    /// The status after criticality: a non-critical `fail` shows as `warn`.
    pub status: HealthStatus,
    /// The check's own verdict.
    pub raw_status: HealthStatus,
    /// The output line (failure reason or figures).
    pub output: Option<String>,
    /// Observed figures.
    pub observations: Vec<Observation>,
    /// How long the run took.
    pub duration: Duration,
    /// When the run finished.
    pub time: DateTime<Utc>,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeReport {
    /// Which probe.
    pub probe: Probe,
    /// The worst status of the checks (and the lifecycle, for readiness).
    pub status: HealthStatus,
    /// The lifecycle phase at the time of the probe.
    pub phase: LifecyclePhase,
    /// Why the lifecycle failed readiness (not started, shutting down); `None` otherwise.
    pub lifecycle_failure: Option<&'static str>,
    /// The checks that ran (empty when the lifecycle already failed readiness).
    pub checks: Vec<CheckReport>,
    /// Names in `exclude` that match no check in this probe.
    pub unknown_excludes: Vec<String>,
    /// The shortest cache lifetime of the checks involved (for `Cache-Control: max-age`).
    pub max_age: Duration,
}

/// The last run of a check, shared between waiters and the cache.
#[derive(Debug)]
struct RunRecord {
    outcome: CheckOutcome,
    duration: Duration,
    time: DateTime<Utc>,
    finished: Instant,
}

type RunFuture = Shared<BoxFuture<'static, Arc<RunRecord>>>;

#[derive(Default)]
struct EntryState {
    last: Option<Arc<RunRecord>>,
    inflight: Option<RunFuture>,
    runs: u64,
}

struct Entry {
    check: Check,
    state: Mutex<EntryState>,
}

impl Entry {
    fn lock(&self) -> std::sync::MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A callback the server sets to report how many client connections are open.
pub type OpenConnections = Arc<dyn Fn() -> Option<u64> + Send + Sync>;

/// A callback told about every finished run: check name, status after criticality, duration.
pub type RunObserver = Arc<dyn Fn(&str, HealthStatus, Duration) + Send + Sync>;

struct Inner {
    config: HealthConfig,
    entries: RwLock<Vec<Arc<Entry>>>,
    lifecycle: Lifecycle,
    clock: SharedClock,
    created: Instant,
    metrics: CheckMetrics,
    background: Mutex<Option<Background>>,
    open_connections: RwLock<Option<OpenConnections>>,
    observer: RwLock<Option<RunObserver>>,
}

struct Background {
    interval: Duration,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The registry of health checks; cheap to clone (clones share everything).
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("config", &self.inner.config)
            .field("checks", &self.check_names())
            .field("phase", &self.inner.lifecycle.phase())
            .field("background_interval", &self.background_interval())
            .finish_non_exhaustive()
    }
}

impl HealthRegistry {
    /// An empty registry with the system clock, in the starting phase.
    pub fn new(config: HealthConfig) -> Self {
        Self::with_clock(config, SystemClock::shared())
    }

    /// An empty registry whose timestamps come from `clock`.
    pub fn with_clock(config: HealthConfig, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                entries: RwLock::new(Vec::new()),
                lifecycle: Lifecycle::new(),
                clock,
                created: Instant::now(),
                metrics: CheckMetrics::default(),
                background: Mutex::new(None),
                open_connections: RwLock::new(None),
                observer: RwLock::new(None),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HealthConfig {
        &self.inner.config
    }

    /// Adds a check. Names must be unique and match `[A-Za-z0-9._-]{1,64}`.
    pub fn register(&self, check: Check) -> Result<(), HealthError> {
        if !valid_name(&check.name) {
            return Err(HealthError::InvalidName(check.name));
        }
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if entries.iter().any(|e| e.check.name == check.name) {
            return Err(HealthError::DuplicateCheck(check.name));
        }
        entries.push(Arc::new(Entry {
            check,
            state: Mutex::new(EntryState::default()),
        }));
        Ok(())
    }

    /// Registers a check, builder style.
    pub fn with_check(self, check: Check) -> Result<Self, HealthError> {
        self.register(check)?;
        Ok(self)
    }

    /// The names of the registered checks, in registration order.
    pub fn check_names(&self) -> Vec<String> {
        self.entries()
            .iter()
            .map(|e| e.check.name.clone())
            .collect()
    }

    /// The readiness gates; hand a clone to the code that starts and stops the server.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    /// Start-up is complete (call after migrations): readiness may pass.
    pub fn mark_started(&self) {
        self.inner.lifecycle.mark_started();
    }

    /// Shutdown began (call on SIGTERM, before draining): readiness fails at once, liveness stays.
    pub fn mark_shutting_down(&self) {
        self.inner.lifecycle.mark_shutting_down();
    }

    /// Sets the callback the detailed view uses for "open connections".
    pub fn set_open_connections(&self, f: OpenConnections) {
        *self
            .inner
            .open_connections
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// Sets a callback told about every finished run (name, status after criticality,
    /// duration), for exporters other than [`register_metrics`](Self::register_metrics).
    /// It runs on the check's task: keep it short and non-blocking.
    pub fn set_run_observer(&self, observer: RunObserver) {
        *self
            .inner
            .observer
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    pub(crate) fn open_connections(&self) -> Option<u64> {
        let f = self
            .inner
            .open_connections
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        f.and_then(|f| f())
    }

    /// Registers `watchpost_health_check_status{check}` (1 pass, 0.5 warn, 0 fail) and
    /// `watchpost_health_check_duration_seconds{check}`, both from the last run of each check.
    pub fn register_metrics(&self, registry: &mut Registry) {
        self.inner.metrics.register(registry);
    }

    /// How many times the check `name` has run (started); `None` for an unknown name.
    pub fn run_count(&self, name: &str) -> Option<u64> {
        self.entry(name).map(|e| e.lock().runs)
    }

    /// Seconds since the registry was created.
    pub fn uptime(&self) -> Duration {
        self.inner.created.elapsed()
    }

    /// The current wall-clock time of the registry's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn entries(&self) -> Vec<Arc<Entry>> {
        self.inner
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        self.entries().into_iter().find(|e| e.check.name == name)
    }

    /// The background interval, when background mode runs.
    pub fn background_interval(&self) -> Option<Duration> {
        self.inner
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|b| b.interval)
    }

    /// Runs every check every `interval` in a background task; endpoints then answer from the
    /// last results, and a result older than three intervals counts as `fail` ("stale").
    ///
    /// A hanging check does not hold up the others: each runs on its own, single-flighted.
    pub fn start_background(&self, interval: Duration) -> Result<(), HealthError> {
        if interval.is_zero() {
            return Err(HealthError::ZeroInterval);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| HealthError::NoRuntime)?;
        let mut background = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if background.as_ref().is_some_and(|b| b.task.is_some()) {
            return Err(HealthError::BackgroundRunning);
        }
        // The task holds a weak reference so a dropped registry ends it.
        let weak = Arc::downgrade(&self.inner);
        let task = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let registry = HealthRegistry { inner };
                for entry in registry.entries() {
                    // Start (or join) a run without waiting for it.
                    drop(registry.start_or_join(&entry));
                }
            }
        });
        *background = Some(Background {
            interval,
            task: Some(task),
        });
        tracing::debug!(
            interval_ms = interval.as_millis() as u64,
            "background health checks started"
        );
        Ok(())
    }

    /// Stops background mode (if running) and waits for its task to end; results already
    /// collected keep ageing and turn stale. Runs in flight finish on their own.
    pub async fn shutdown(&self) {
        let task = self
            .inner
            .background
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .and_then(|b| b.task.take());
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Starts a run of `entry`, or joins the one in flight (single flight).
    fn start_or_join(&self, entry: &Arc<Entry>) -> RunFuture {
        let mut state = entry.lock();
        if let Some(inflight) = &state.inflight {
            return inflight.clone();
        }
        state.runs += 1;
        let observer = self
            .inner
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fut = spawn_run(
            entry.clone(),
            self.inner.clock.clone(),
            self.inner.metrics.clone(),
            observer,
        );
        state.inflight = Some(fut.clone());
        fut
    }

    /// The current result of one check: cached, from the background, or a fresh run.
    async fn evaluate(&self, entry: &Arc<Entry>) -> CheckReport {
        let background = self.background_interval();
        {
            let state = entry.lock();
            match (&state.last, background) {
                (Some(last), Some(interval)) => {
                    let age = last.finished.elapsed();
                    let stale_after = interval * STALE_AFTER_INTERVALS;
                    if age > stale_after {
                        return stale_report(&entry.check, last, age, stale_after);
                    }
                    return report(&entry.check, last);
                }
                (Some(last), None) if last.finished.elapsed() < entry.check.cache_ttl => {
                    return report(&entry.check, last);
                }
                _ => {}
            }
        }
        let record = self.start_or_join(entry).await;
        report(&entry.check, &record)
    }

    /// Runs one probe, with the checks named in `exclude` left out.
    pub async fn probe(&self, probe: Probe, exclude: &[String]) -> ProbeReport {
        let phase = self.inner.lifecycle.phase();
        let entries: Vec<Arc<Entry>> = self
            .entries()
            .into_iter()
            .filter(|e| match probe {
                Probe::Liveness => e.check.liveness,
                Probe::Readiness => e.check.readiness,
                Probe::Detailed => true,
            })
            .collect();
        let names: BTreeSet<&str> = entries.iter().map(|e| e.check.name.as_str()).collect();
        let mut unknown_excludes: Vec<String> = exclude
            .iter()
            .filter(|x| !names.contains(x.as_str()))
            .cloned()
            .collect();
        unknown_excludes.dedup();
        let entries: Vec<Arc<Entry>> = entries
            .into_iter()
            .filter(|e| !exclude.iter().any(|x| *x == e.check.name))
            .collect();
        let max_age = entries
            .iter()
            .map(|e| e.check.cache_ttl)
            .min()
            .unwrap_or(self.inner.config.default_cache_ttl);

        let lifecycle_failure = match (probe, phase) {
            (Probe::Readiness, LifecyclePhase::Starting) => Some("start-up is not complete"),
            (Probe::Readiness, LifecyclePhase::ShuttingDown) => Some("the server is shutting down"),
            _ => None,
        };
        // A failed lifecycle answers at once: no dependency is touched during start-up or drain.
        let checks = if lifecycle_failure.is_some() {
            Vec::new()
        } else {
            futures_util::future::join_all(entries.iter().map(|e| self.evaluate(e))).await
        };
        let status = if lifecycle_failure.is_some() {
            HealthStatus::Fail
        } else {
            HealthStatus::worst(checks.iter().map(|c| c.status))
        };
        ProbeReport {
            probe,
            status,
            phase,
            lifecycle_failure,
            checks,
            unknown_excludes,
            max_age,
        }
    }

    /// Runs (or reads the cached result of) the check `name`; `None` for an unknown name.
    pub async fn check(&self, name: &str) -> Option<CheckReport> {
        let entry = self.entry(name)?;
        Some(self.evaluate(&entry).await)
    }

    /// The cache lifetime of the check `name`.
    pub(crate) fn cache_ttl(&self, name: &str) -> Option<Duration> {
        self.entry(name).map(|e| e.check.cache_ttl)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

/// Spawns one bounded, panic-safe run; the task stores its result in the cache itself, so
/// the run completes and is recorded even when every waiter has gone.
fn spawn_run(
    entry: Arc<Entry>,
    clock: SharedClock,
    metrics: CheckMetrics,
    observer: Option<RunObserver>,
) -> RunFuture {
    let name = entry.check.name.clone();
    let fallback_clock = clock.clone();
    let handle = tokio::spawn(async move {
        let started = Instant::now();
        let timeout = entry.check.timeout;
        let check = entry.check.check.clone();
        let run = AssertUnwindSafe(async move { check.run().await }).catch_unwind();
        let outcome = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(payload)) => {
                let message = panic_message(payload.as_ref());
                tracing::error!(check = %entry.check.name, panic = %message, "health check panicked");
                CheckOutcome::fail(format!("check panicked: {message}"))
            }
            Err(_) => CheckOutcome::fail(format!("timed out after {} ms", timeout.as_millis())),
        };
        let duration = started.elapsed();
        let effective = effective_status(entry.check.critical, outcome.status);
        metrics.record(&entry.check.name, effective, duration.as_secs_f64());
        if let Some(observer) = &observer {
            observer(&entry.check.name, effective, duration);
        }
        let previous = entry.lock().last.as_ref().map(|l| l.outcome.status);
        // Log transitions only: a probe storm or a background loop must not flood the log.
        if previous != Some(outcome.status) {
            let output = outcome.output.as_deref().unwrap_or("");
            let duration_ms = duration.as_millis() as u64;
            let name = entry.check.name.as_str();
            match (previous, outcome.status) {
                (_, HealthStatus::Fail) | (_, HealthStatus::Warn) => tracing::warn!(
                    check = name,
                    status = %outcome.status,
                    previous = previous.map(HealthStatus::as_str).unwrap_or("none"),
                    critical = entry.check.critical,
                    output,
                    duration_ms,
                    "health check is not passing"
                ),
                (Some(_), HealthStatus::Pass) => tracing::info!(
                    check = name,
                    previous = previous.map(HealthStatus::as_str).unwrap_or("none"),
                    duration_ms,
                    "health check passes again"
                ),
                (None, HealthStatus::Pass) => {}
            }
        }
        let record = Arc::new(RunRecord {
            outcome,
            duration,
            time: clock.now(),
            finished: Instant::now(),
        });
        let mut state = entry.lock();
        state.last = Some(record.clone());
        state.inflight = None;
        record
    });
    async move {
        match handle.await {
            Ok(record) => record,
            // Only a runtime shutting down cancels the task; report it rather than hang.
            Err(e) => Arc::new(RunRecord {
                outcome: CheckOutcome::fail(format!("check {name} did not finish: {e}")),
                duration: Duration::ZERO,
                time: fallback_clock.now(),
                finished: Instant::now(),
            }),
        }
    }
    .boxed()
    .shared()
}

/// A non-critical failure degrades to `warn`.
pub(crate) fn effective_status(critical: bool, status: HealthStatus) -> HealthStatus {
    if !critical && status == HealthStatus::Fail {
        HealthStatus::Warn
    } else {
        status
    }
}

fn report(check: &Check, record: &RunRecord) -> CheckReport {
    CheckReport {
        name: check.name.clone(),
        critical: check.critical,
        component_type: check.component_type.clone(),
        status: effective_status(check.critical, record.outcome.status),
        raw_status: record.outcome.status,
        output: record.outcome.output.clone(),
        observations: record.outcome.observations.clone(),
        duration: record.duration,
        time: record.time,
    }
}

fn stale_report(check: &Check, record: &RunRecord, age: Duration, limit: Duration) -> CheckReport {
    let mut r = report(check, record);
    r.raw_status = HealthStatus::Fail;
    r.status = effective_status(check.critical, HealthStatus::Fail);
    r.output = Some(format!(
        "stale: last result is {} ms old, older than {} ms (three background intervals)",
        age.as_millis(),
        limit.as_millis()
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_critical_failure_is_warn() {
        assert_eq!(
            effective_status(false, HealthStatus::Fail),
            HealthStatus::Warn
        );
        assert_eq!(
            effective_status(true, HealthStatus::Fail),
            HealthStatus::Fail
        );
        assert_eq!(
            effective_status(false, HealthStatus::Pass),
            HealthStatus::Pass
        );
    }

    #[test]
    fn panic_messages_are_read() {
        let p: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_message(p.as_ref()), "boom");
        let p: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_message(p.as_ref()), "bang");
        let p: Box<dyn std::any::Any + Send> = Box::new(7_u8);
        assert_eq!(panic_message(p.as_ref()), "a non-text panic payload");
    }
}
