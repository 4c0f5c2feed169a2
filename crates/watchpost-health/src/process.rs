//! Figures about this process read from `/proc` (Linux): resident memory.
//!
//! Read as plain files, so no unsafe code and no platform crate; elsewhere they are `None`.

use std::path::Path;

/// Resident memory of this process in bytes, from `/proc/self/status`.
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    resident_memory_from(Path::new("/proc/self/status"))
}

/// Resident memory from a `/proc/<pid>/status`-shaped file.
pub(crate) fn resident_memory_from(path: &Path) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(path).ok()?)
}

/// The `VmRSS:` line of a status file, in bytes.
pub(crate) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let factor = match parts.next().unwrap_or("kB") {
        "kB" | "KB" | "kb" => 1024,
        "mB" | "MB" => 1024 * 1024,
        "B" => 1,
        _ => return None,
    };
    value.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let text = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    4512 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(text), Some(4512 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert_eq!(parse_vm_rss("VmRSS: many kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_resident_memory() {
        assert!(resident_memory_bytes().is_some_and(|b| b > 0));
    }
}
