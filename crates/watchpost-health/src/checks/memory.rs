//! [`MemoryCheck`]: this process's resident memory against its cgroup (v2 or v1) memory limit.

use std::path::{Path, PathBuf};

use crate::check::{CheckFuture, CheckOutcome, HealthCheck};

/// cgroup v1 reports "no limit" as a huge number (a page-rounded `i64::MAX`).
const V1_UNLIMITED: u64 = 1 << 60;

/// Warns when resident memory is above 90 % of the cgroup limit; passes when there is no limit.
///
/// It never fails: memory pressure is worth a look, not a restart or a removal from rotation.
#[derive(Debug, Clone)]
pub struct MemoryCheck {
    warn_above: f64,
    proc_status: PathBuf,
    proc_cgroup: PathBuf,
    cgroup_root: PathBuf,
}

impl Default for MemoryCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryCheck {
    /// A check of this process, reading `/proc/self` and `/sys/fs/cgroup`.
    pub fn new() -> Self {
        Self {
            warn_above: 90.0,
            proc_status: PathBuf::from("/proc/self/status"),
            proc_cgroup: PathBuf::from("/proc/self/cgroup"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }

    /// Warns above `percent` of the limit instead of 90 %.
    #[must_use]
    pub fn warn_above(mut self, percent: f64) -> Self {
        self.warn_above = percent;
        self
    }

    /// Reads from other files (for tests and unusual mounts): a `/proc/<pid>/status`, a
    /// `/proc/<pid>/cgroup` and the cgroup filesystem root.
    #[must_use]
    pub fn with_paths(
        mut self,
        proc_status: impl Into<PathBuf>,
        proc_cgroup: impl Into<PathBuf>,
        cgroup_root: impl Into<PathBuf>,
    ) -> Self {
        self.proc_status = proc_status.into();
        self.proc_cgroup = proc_cgroup.into();
        self.cgroup_root = cgroup_root.into();
        self
    }

    /// The memory limit of this process's cgroup in bytes, `None` when there is none.
    pub fn cgroup_limit(&self) -> Option<u64> {
        let membership = std::fs::read_to_string(&self.proc_cgroup).unwrap_or_default();
        let mut v2_path = None;
        let mut v1_path = None;
        for line in membership.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if id == "0" && controllers.is_empty() {
                v2_path = Some(path.trim_start_matches('/').to_owned());
            } else if controllers.split(',').any(|c| c == "memory") {
                v1_path = Some(path.trim_start_matches('/').to_owned());
            }
        }
        let root = &self.cgroup_root;
        let v2 = [
            v2_path.as_deref().map(|p| root.join(p).join("memory.max")),
            Some(root.join("memory.max")),
        ];
        for file in v2.into_iter().flatten() {
            if let Some(value) = read_trimmed(&file) {
                return value.parse().ok();
            }
        }
        let v1 = [
            v1_path
                .as_deref()
                .map(|p| root.join("memory").join(p).join("memory.limit_in_bytes")),
            Some(root.join("memory").join("memory.limit_in_bytes")),
        ];
        for file in v1.into_iter().flatten() {
            if let Some(value) = read_trimmed(&file) {
                return value.parse().ok().filter(|&v: &u64| v < V1_UNLIMITED);
            }
        }
        None
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn mb(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

impl HealthCheck for MemoryCheck {
    fn run(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let Some(resident) = crate::process::resident_memory_from(&self.proc_status) else {
                return CheckOutcome::pass()
                    .with_output("resident memory is not known on this platform");
            };
            let outcome = match self.cgroup_limit() {
                None => CheckOutcome::pass().with_output(format!(
                    "{} MB resident; no cgroup memory limit",
                    mb(resident)
                )),
                Some(limit) => {
                    let percent = if limit == 0 {
                        100.0
                    } else {
                        resident as f64 / limit as f64 * 100.0
                    };
                    let rounded = (percent * 10.0).round() / 10.0;
                    let text = format!(
                        "{} MB resident of a {} MB cgroup limit ({rounded}%)",
                        mb(resident),
                        mb(limit)
                    );
                    let base = if percent > self.warn_above {
                        CheckOutcome::warn(format!("{text}, above {}%", self.warn_above))
                    } else {
                        CheckOutcome::pass().with_output(text)
                    };
                    base.observe("utilization", rounded, Some("percent"))
                        .observe("limit", limit, Some("bytes"))
                }
            };
            outcome.observe("residentMemory", resident, Some("bytes"))
        })
    }

    fn component_type(&self) -> &'static str {
        "system"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchpost_core::HealthStatus;

    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new(rss_kb: u64, cgroup_line: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("status"), format!("VmRSS:\t{rss_kb} kB\n")).unwrap();
            std::fs::write(dir.path().join("cgroup"), cgroup_line).unwrap();
            std::fs::create_dir_all(dir.path().join("fs")).unwrap();
            Self { dir }
        }
        fn write(&self, rel: &str, text: &str) {
            let p = self.dir.path().join("fs").join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        fn check(&self) -> MemoryCheck {
            let d = self.dir.path();
            MemoryCheck::new().with_paths(d.join("status"), d.join("cgroup"), d.join("fs"))
        }
    }

    #[tokio::test]
    async fn v2_limit_warns_above_ninety_percent() {
        let f = Fake::new(950 * 1024, "0::/app.slice/svc\n");
        f.write("app.slice/svc/memory.max", "1048576000\n");
        assert_eq!(f.check().cgroup_limit(), Some(1_048_576_000));
        let out = f.check().run().await;
        assert_eq!(out.status, HealthStatus::Warn, "{out:?}");
        let out = f.check().warn_above(99.0).run().await;
        assert_eq!(out.status, HealthStatus::Pass);
    }

    #[tokio::test]
    async fn v2_max_means_no_limit() {
        let f = Fake::new(1024, "0::/\n");
        f.write("memory.max", "max\n");
        assert_eq!(f.check().cgroup_limit(), None);
        let out = f.check().run().await;
        assert_eq!(out.status, HealthStatus::Pass);
        assert!(out.output.unwrap().contains("no cgroup memory limit"));
    }

    #[tokio::test]
    async fn v1_limit_and_unlimited() {
        let f = Fake::new(100 * 1024, "4:memory:/docker/abc\n1:cpu:/\n");
        f.write("memory/docker/abc/memory.limit_in_bytes", "209715200\n");
        assert_eq!(f.check().cgroup_limit(), Some(209_715_200));
        let out = f.check().run().await;
        assert_eq!(out.status, HealthStatus::Pass);
        f.write(
            "memory/docker/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(f.check().cgroup_limit(), None);
    }
}
