//! Process metrics read from `/proc` at scrape time (Linux), and `watchpost_build_info`.
//!
//! Reading `/proc/self/stat`, `/proc/self/status`, `/proc/self/limits`, `/proc/self/fd` and
//! `/proc/stat` needs no `unsafe` and no libc binding. CPU times in `/proc/self/stat` are in
//! `USER_HZ` ticks, which Linux fixes at 100 on every architecture for this interface.
//! On other systems the process families are not written.

use serde::{Deserialize, Serialize};

use crate::encode::{self, Format};
use crate::family::Collect;

/// What the process metrics say at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_memory_bytes: u64,
    /// Virtual memory size, bytes.
    pub virtual_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
    /// Start time since the Unix epoch, seconds.
    pub start_time_seconds: f64,
    /// OS threads.
    pub threads: u64,
}

/// Linux's fixed `USER_HZ`: the unit of CPU times in `/proc/<pid>/stat`.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    /// Reads the current process's figures from `/proc`; `None` where `/proc` is missing.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let system_stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        Self::parse(&stat, &status, &limits, &system_stat, open_fds)
    }

    /// Parses the texts of `/proc/self/stat`, `/proc/self/status`, `/proc/self/limits` and `/proc/stat`.
    pub fn parse(
        stat: &str,
        status: &str,
        limits: &str,
        system_stat: &str,
        open_fds: u64,
    ) -> Option<Self> {
        // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
        let after = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        // `after` starts at field 3 (state); field n is at index n - 3.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let utime = field(14)?;
        let stime = field(15)?;
        let threads_stat = field(20);
        let start_ticks = field(22)?;
        let vsize = field(23)?;
        let status_kb = |key: &str| {
            status.lines().find_map(|l| {
                l.strip_prefix(key)?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
        };
        let rss = status_kb("VmRSS:").unwrap_or(0) * 1024;
        let threads = status_kb("Threads:").or(threads_stat).unwrap_or(0);
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| {
                l.trim_start_matches("Max open files")
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        let boot_time = system_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            resident_memory_bytes: rss,
            virtual_memory_bytes: vsize,
            open_fds,
            max_fds,
            start_time_seconds: boot_time as f64 + start_ticks as f64 / USER_HZ,
            threads,
        })
    }
}

/// Writes the `process_*` families at scrape time.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

const PROCESS_FAMILIES: [(&str, &str, &str); 7] = [
    (
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    ),
    (
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    ),
    (
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    ),
    (
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    ),
    (
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
    ),
    (
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    ),
    (
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
    ),
];

/// The names of the process families, as written in Prometheus text.
pub(crate) const PROCESS_FAMILY_NAMES: [&str; 7] = [
    PROCESS_FAMILIES[0].0,
    PROCESS_FAMILIES[1].0,
    PROCESS_FAMILIES[2].0,
    PROCESS_FAMILIES[3].0,
    PROCESS_FAMILIES[4].0,
    PROCESS_FAMILIES[5].0,
    PROCESS_FAMILIES[6].0,
];

impl Collect for ProcessCollector {
    fn collect(&self, out: &mut String, format: Format) {
        let Some(stats) = ProcessStats::read() else {
            return;
        };
        for (name, kind, help) in PROCESS_FAMILIES {
            let family = match (kind, format) {
                ("counter", Format::OpenMetrics) => name.trim_end_matches("_total"),
                _ => name,
            };
            out.push_str("# HELP ");
            out.push_str(family);
            out.push(' ');
            out.push_str(help);
            out.push_str("\n# TYPE ");
            out.push_str(family);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
            out.push_str(name);
            out.push(' ');
            match name {
                "process_cpu_seconds_total" => encode::push_f64(out, stats.cpu_seconds),
                "process_resident_memory_bytes" => {
                    encode::push_u64(out, stats.resident_memory_bytes);
                }
                "process_virtual_memory_bytes" => encode::push_u64(out, stats.virtual_memory_bytes),
                "process_open_fds" => encode::push_u64(out, stats.open_fds),
                "process_max_fds" => encode::push_u64(out, stats.max_fds),
                "process_start_time_seconds" => encode::push_f64(out, stats.start_time_seconds),
                _ => encode::push_u64(out, stats.threads),
            }
            out.push('\n');
        }
    }

    fn describe(&self) -> Vec<(String, Vec<String>)> {
        PROCESS_FAMILIES
            .iter()
            .map(|(name, _, _)| ((*name).to_owned(), Vec::new()))
            .collect()
    }
}

/// What `watchpost_build_info` says; the server fills it from its build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// The release version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The source revision (a git commit), or `unknown`.
    pub revision: String,
    /// The compiler version, or `unknown`.
    pub rustc: String,
}

/// Writes `watchpost_build_info{version,revision,rustc} 1`.
#[derive(Debug)]
pub(crate) struct BuildInfoCollector {
    labels: String,
}

impl BuildInfoCollector {
    pub(crate) fn new(info: &BuildInfo) -> Self {
        let or_unknown = |s: &str| {
            if s.is_empty() {
                "unknown".to_owned()
            } else {
                s.to_owned()
            }
        };
        let mut labels = String::new();
        encode::push_label_pairs(
            &mut labels,
            &["version".into(), "revision".into(), "rustc".into()],
            [
                or_unknown(&info.version).as_str(),
                or_unknown(&info.revision).as_str(),
                or_unknown(&info.rustc).as_str(),
            ],
        );
        Self { labels }
    }
}

impl Collect for BuildInfoCollector {
    fn collect(&self, out: &mut String, format: Format) {
        // OpenMetrics has an `info` type whose samples add `_info`; 0.0.4 calls it a gauge.
        let (family, kind) = match format {
            Format::Prometheus => ("watchpost_build_info", "gauge"),
            Format::OpenMetrics => ("watchpost_build", "info"),
        };
        out.push_str("# HELP ");
        out.push_str(family);
        out.push_str(" Watchpost build: version, source revision and compiler; always 1.\n# TYPE ");
        out.push_str(family);
        out.push(' ');
        out.push_str(kind);
        out.push_str("\nwatchpost_build_info{");
        out.push_str(&self.labels);
        out.push_str("} 1\n");
    }

    fn describe(&self) -> Vec<(String, Vec<String>)> {
        vec![(
            "watchpost_build_info".to_owned(),
            vec!["version".into(), "revision".into(), "rustc".into()],
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_texts() {
        let stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 130 0 0 20 0 9 0 12345 104857600 2560 18446744073709551615";
        let status = "Name:\tx\nVmSize:\t  102400 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let system = "cpu  1 2 3\nbtime 1700000000\n";
        let s = ProcessStats::parse(stat, status, limits, system, 12).unwrap();
        assert!((s.cpu_seconds - 3.8).abs() < 1e-9);
        assert_eq!(s.resident_memory_bytes, 10 * 1024 * 1024);
        assert_eq!(s.virtual_memory_bytes, 104_857_600);
        assert_eq!(s.max_fds, 1024);
        assert_eq!(s.open_fds, 12);
        assert_eq!(s.threads, 9);
        assert!((s.start_time_seconds - 1_700_000_123.45).abs() < 1e-6);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read().unwrap();
        assert!(s.resident_memory_bytes > 0);
        assert!(s.threads >= 1);
        assert!(s.open_fds >= 1 && s.max_fds >= s.open_fds);
        assert!(s.start_time_seconds > 1_600_000_000.0);
    }
}
