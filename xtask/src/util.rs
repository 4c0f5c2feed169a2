//! Small helpers: the workspace root, running commands with a clear failure, timing steps.
#![allow(clippy::print_stdout)] // Progress lines are the point.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The workspace root (the parent of `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives inside the workspace")
        .to_owned()
}

/// A `cargo` command (the one running xtask) in the workspace root, without the package
/// variables `cargo run` set for xtask itself. Left in, they reach build scripts that track them
/// (ring's tracks `CARGO_MANIFEST_DIR`), so the same build from a shell and from xtask would
/// invalidate each other: minutes of rebuilding and a fresh whole-program link each time.
pub(crate) fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    c.current_dir(workspace_root());
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            c.env_remove(name);
        }
    }
    c
}

/// Runs `cmd`, failing with its command line when it does not exit 0.
pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// Runs `cmd` and returns its stdout, failing when it does not exit 0.
pub(crate) fn output(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{shown} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Whether `program` is on PATH.
pub(crate) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
        .unwrap_or(false)
}

/// Times a named step and prints its duration.
pub(crate) fn step<T>(name: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    println!("==> {name}");
    let started = Instant::now();
    let result = f();
    let secs = started.elapsed().as_secs_f64();
    match &result {
        Ok(_) => println!("==> {name}: ok in {secs:.1} s"),
        Err(e) => println!("==> {name}: FAILED after {secs:.1} s: {e}"),
    }
    result.map_err(|e| format!("{name}: {e}"))
}

/// Whether this process runs as root (`id -u` is 0).
pub(crate) fn is_root() -> bool {
    output(Command::new("id").arg("-u"))
        .map(|s| s.trim() == "0")
        .unwrap_or(false)
}
