//! The check vocabulary: the [`HealthCheck`] trait, what one run returns ([`CheckOutcome`],
//! [`Observation`]), and how a check is registered ([`Check`]: name, criticality, probes,
//! timeout, cache lifetime).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use watchpost_core::HealthStatus;

/// The future a [`HealthCheck`] returns.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckOutcome> + Send + 'a>>;

/// A probe of one dependency or internal condition.
///
/// Implementations return an outcome and never need to handle timeouts or panics: the
/// registry bounds every run by the check's timeout and turns a panic into `fail`.
pub trait HealthCheck: Send + Sync + 'static {
    /// Runs the check once.
    fn run(&self) -> CheckFuture<'_>;

    /// The draft's `componentType`: `datastore`, `system`, `component` (the default), or a URI.
    fn component_type(&self) -> &'static str {
        "component"
    }
}

/// A [`HealthCheck`] made from an async closure; see [`check_fn`].
pub struct FnCheck<F> {
    f: F,
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck").finish_non_exhaustive()
    }
}

/// A check from an async closure returning a [`CheckOutcome`].
///
/// ```
/// use watchpost_health::{CheckOutcome, check_fn};
/// let check = check_fn(|| async { CheckOutcome::pass() });
/// # let _ = check;
/// ```
pub fn check_fn<F, Fut>(f: F) -> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckOutcome> + Send + 'static,
{
    FnCheck { f }
}

impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckOutcome> + Send + 'static,
{
    fn run(&self) -> CheckFuture<'_> {
        Box::pin((self.f)())
    }
}

/// One observed figure of a run, shown in the detailed view as `"<check>:<measurement>"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The measurement name (`connections`, `freePercent`, ...).
    pub measurement: String,
    /// The observed value.
    pub value: serde_json::Value,
    /// The unit (`ms`, `bytes`, `percent`, ...), when there is one.
    pub unit: Option<String>,
}

/// What one run of a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckOutcome {
    /// The check's own verdict (before criticality is applied).
    pub status: HealthStatus,
    /// A human-readable line: why it failed, or figures such as `Pool: 10 total, 5 idle`.
    pub output: Option<String>,
    /// Observed figures.
    pub observations: Vec<Observation>,
}

impl CheckOutcome {
    /// A passing outcome.
    pub fn pass() -> Self {
        Self::with_status(HealthStatus::Pass)
    }

    /// A warning with a reason.
    pub fn warn(output: impl Into<String>) -> Self {
        Self::with_status(HealthStatus::Warn).with_output(output)
    }

    /// A failure with a reason.
    pub fn fail(output: impl Into<String>) -> Self {
        Self::with_status(HealthStatus::Fail).with_output(output)
    }

    /// An outcome of the given status, with no output.
    pub fn with_status(status: HealthStatus) -> Self {
        Self {
            status,
            output: None,
            observations: Vec::new(),
        }
    }

    /// `pass` for `Ok`, `fail` with the error's text for `Err`.
    pub fn from_result<T, E: fmt::Display>(result: Result<T, E>) -> Self {
        match result {
            Ok(_) => Self::pass(),
            Err(e) => Self::fail(e.to_string()),
        }
    }

    /// Sets the output line.
    #[must_use]
    pub fn with_output(mut self, output: impl Into<String>) -> Self {
        self.output = Some(output.into());
        self
    }

    /// Adds an observed figure.
    #[must_use]
    pub fn observe(
        mut self,
        measurement: impl Into<String>,
        value: impl Into<serde_json::Value>,
        unit: Option<&str>,
    ) -> Self {
        self.observations.push(Observation {
            measurement: measurement.into(),
            value: value.into(),
            unit: unit.map(str::to_owned),
        });
        self
    }
}

/// The default per-check timeout: 1 s, below the Kubernetes probe default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default cache lifetime of a result.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(1);

/// A check and how the registry runs it.
///
/// Defaults: critical, in readiness (not liveness), timeout [`DEFAULT_TIMEOUT`], cached for
/// [`DEFAULT_CACHE_TTL`].
#[derive(Clone)]
pub struct Check {
    pub(crate) name: String,
    pub(crate) check: Arc<dyn HealthCheck>,
    pub(crate) critical: bool,
    pub(crate) liveness: bool,
    pub(crate) readiness: bool,
    pub(crate) timeout: Duration,
    pub(crate) cache_ttl: Duration,
    pub(crate) component_type: String,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("critical", &self.critical)
            .field("liveness", &self.liveness)
            .field("readiness", &self.readiness)
            .field("timeout", &self.timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("component_type", &self.component_type)
            .finish_non_exhaustive()
    }
}

impl Check {
    /// A critical readiness check named `name`.
    pub fn new(name: impl Into<String>, check: impl HealthCheck) -> Self {
        let component_type = check.component_type().to_owned();
        Self {
            name: name.into(),
            check: Arc::new(check),
            critical: true,
            liveness: false,
            readiness: true,
            timeout: DEFAULT_TIMEOUT,
            cache_ttl: DEFAULT_CACHE_TTL,
            component_type,
        }
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a failure fails readiness (`true`), or only degrades it to `warn` (`false`).
    #[must_use]
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Shorthand for `critical(false)`.
    #[must_use]
    pub fn non_critical(self) -> Self {
        self.critical(false)
    }

    /// Whether the check is part of liveness. Only for checks of the process itself:
    /// liveness must never depend on external systems.
    #[must_use]
    pub fn liveness(mut self, yes: bool) -> Self {
        self.liveness = yes;
        self
    }

    /// Whether the check is part of readiness (the default).
    #[must_use]
    pub fn readiness(mut self, yes: bool) -> Self {
        self.readiness = yes;
        self
    }

    /// Shows the check only in the detailed view, in no probe.
    #[must_use]
    pub fn detailed_only(self) -> Self {
        self.liveness(false).readiness(false)
    }

    /// The longest a run may take; a slower run is `fail` ("timed out after N ms").
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a result is reused before the check runs again (on-demand mode).
    #[must_use]
    pub fn cache_for(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }

    /// Overrides the `componentType` shown in the detailed view.
    #[must_use]
    pub fn component_type(mut self, component_type: impl Into<String>) -> Self {
        self.component_type = component_type.into();
        self
    }
}
