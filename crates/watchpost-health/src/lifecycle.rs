//! [`Lifecycle`]: readiness gates owned by the server (start-up complete, shutting down).
//!
//! Readiness is `fail` until [`Lifecycle::mark_started`] (call it after migrations) and
//! turns `fail` at once on [`Lifecycle::mark_shutting_down`] (call it on SIGTERM, before
//! draining), so the load balancer stops sending traffic while in-flight requests finish.
//! Liveness never looks at the lifecycle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const STARTING: u8 = 0;
const STARTED: u8 = 1;
const SHUTTING_DOWN: u8 = 2;

/// Where the process is in its life, as readiness sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LifecyclePhase {
    /// Start-up (migrations, warm-up) is not complete yet.
    Starting,
    /// Serving.
    Started,
    /// Draining before exit.
    ShuttingDown,
}

impl LifecyclePhase {
    /// `starting`, `started` or `shutting_down`.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecyclePhase::Starting => "starting",
            LifecyclePhase::Started => "started",
            LifecyclePhase::ShuttingDown => "shutting_down",
        }
    }
}

/// A cheap, cloneable handle to the readiness gates; every clone sees the same state.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    phase: Arc<AtomicU8>,
}

impl Lifecycle {
    /// A lifecycle in the starting phase.
    pub fn new() -> Self {
        Self::default()
    }

    /// Start-up is complete: readiness may pass. Has no effect once shutting down.
    pub fn mark_started(&self) {
        let _ = self
            .phase
            .compare_exchange(STARTING, STARTED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Shutdown began: readiness fails from now on; liveness is unaffected. Irreversible.
    pub fn mark_shutting_down(&self) {
        self.phase.store(SHUTTING_DOWN, Ordering::Release);
    }

    /// The current phase.
    pub fn phase(&self) -> LifecyclePhase {
        match self.phase.load(Ordering::Acquire) {
            STARTING => LifecyclePhase::Starting,
            STARTED => LifecyclePhase::Started,
            _ => LifecyclePhase::ShuttingDown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let l = Lifecycle::new();
        assert_eq!(l.phase(), LifecyclePhase::Starting);
        let clone = l.clone();
        clone.mark_started();
        assert_eq!(l.phase(), LifecyclePhase::Started);
        l.mark_shutting_down();
        l.mark_started();
        assert_eq!(clone.phase(), LifecyclePhase::ShuttingDown);
    }
}
