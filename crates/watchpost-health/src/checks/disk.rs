//! [`DiskCheck`]: free space of the filesystem holding a path (statvfs through `nix`).

use std::path::PathBuf;

use watchpost_core::HealthStatus;

use crate::check::{CheckFuture, CheckOutcome, HealthCheck};
use crate::error::HealthError;

/// Warns below 10 % free and fails below 5 % free (space available to unprivileged users).
#[derive(Debug, Clone)]
pub struct DiskCheck {
    path: PathBuf,
    warn_below: f64,
    fail_below: f64,
}

impl DiskCheck {
    /// A check of the filesystem holding `path`, with the default thresholds.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            warn_below: 10.0,
            fail_below: 5.0,
        }
    }

    /// Sets the thresholds in percent free; `fail_below` must not exceed `warn_below`.
    pub fn thresholds(mut self, warn_below: f64, fail_below: f64) -> Result<Self, HealthError> {
        let in_range = |v: f64| (0.0..=100.0).contains(&v);
        if !in_range(warn_below) || !in_range(fail_below) || fail_below > warn_below {
            return Err(HealthError::InvalidThresholds {
                warn_below,
                fail_below,
            });
        }
        self.warn_below = warn_below;
        self.fail_below = fail_below;
        Ok(self)
    }

    /// The status for `free_percent` under these thresholds.
    pub fn status_for(&self, free_percent: f64) -> HealthStatus {
        if free_percent < self.fail_below {
            HealthStatus::Fail
        } else if free_percent < self.warn_below {
            HealthStatus::Warn
        } else {
            HealthStatus::Pass
        }
    }
}

struct Space {
    available: u64,
    total: u64,
}

// fsblkcnt_t and c_ulong are u64 on 64-bit Linux but narrower on other targets.
#[allow(clippy::useless_conversion)]
fn space(path: &std::path::Path) -> nix::Result<Space> {
    let st = nix::sys::statvfs::statvfs(path)?;
    let unit = u64::from(st.fragment_size());
    Ok(Space {
        available: u64::from(st.blocks_available()).saturating_mul(unit),
        total: u64::from(st.blocks()).saturating_mul(unit),
    })
}

impl HealthCheck for DiskCheck {
    fn run(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let path = self.path.clone();
            // statvfs can block on network filesystems: keep it off the async workers.
            let result = tokio::task::spawn_blocking(move || space(&path)).await;
            let shown = self.path.display();
            let space = match result {
                Ok(Ok(space)) => space,
                Ok(Err(e)) => {
                    return CheckOutcome::fail(format!(
                        "cannot read free space of {shown}: {e}; does the path exist?"
                    ));
                }
                Err(e) => return CheckOutcome::fail(format!("the disk check did not finish: {e}")),
            };
            if space.total == 0 {
                return CheckOutcome::warn(format!("the filesystem of {shown} reports no size"));
            }
            let free_percent = space.available as f64 / space.total as f64 * 100.0;
            let rounded = (free_percent * 10.0).round() / 10.0;
            let status = self.status_for(free_percent);
            let output = match status {
                HealthStatus::Pass => format!("{rounded}% free at {shown}"),
                HealthStatus::Warn => format!(
                    "only {rounded}% free at {shown} (warn below {}%)",
                    self.warn_below
                ),
                HealthStatus::Fail => format!(
                    "only {rounded}% free at {shown} (fail below {}%); free space now",
                    self.fail_below
                ),
            };
            CheckOutcome::with_status(status)
                .with_output(output)
                .observe("freePercent", rounded, Some("percent"))
                .observe("freeBytes", space.available, Some("bytes"))
                .observe("totalBytes", space.total, Some("bytes"))
        })
    }

    fn component_type(&self) -> &'static str {
        "system"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide() {
        let c = DiskCheck::new("/");
        assert_eq!(c.status_for(50.0), HealthStatus::Pass);
        assert_eq!(c.status_for(10.0), HealthStatus::Pass);
        assert_eq!(c.status_for(9.9), HealthStatus::Warn);
        assert_eq!(c.status_for(5.0), HealthStatus::Warn);
        assert_eq!(c.status_for(4.9), HealthStatus::Fail);
        assert!(DiskCheck::new("/").thresholds(5.0, 10.0).is_err());
        assert!(DiskCheck::new("/").thresholds(101.0, 1.0).is_err());
        let c = DiskCheck::new("/").thresholds(50.0, 20.0).unwrap();
        assert_eq!(c.status_for(30.0), HealthStatus::Warn);
    }
}
