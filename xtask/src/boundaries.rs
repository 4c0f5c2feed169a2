//! Dependency boundaries (architecture invariants), checked with `cargo tree`:
//! `watchpost-core` depends on no web framework, runtime or database driver, and no feature crate
//! depends on another Watchpost feature crate.

use std::collections::BTreeSet;
use std::path::Path;

use crate::util::output;

/// What `watchpost-core` must never pull in, directly or not.
const CORE_FORBIDDEN: &[&str] = &[
    "axum",
    "axum-core",
    "hyper",
    "tokio",
    "async-std",
    "tokio-postgres",
    "postgres",
    "rusqlite",
    "libsqlite3-sys",
    "redis",
    "sqlx",
    "diesel",
    "tower",
    "actix-web",
];

/// Crates that are not feature crates.
const NOT_FEATURE_CRATES: &[&str] = &[
    "watchpost-core",
    "watchpost-server",
    "watchpost-test-support",
];

/// The library crates under `crates/` (every package but the server binary), by folder name.
pub(crate) fn library_crates(root: &Path) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("crates"))
        .map_err(|e| format!("cannot read crates/: {e}"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "watchpost-server")
        .collect();
    names.sort();
    Ok(names)
}

/// Package names in the normal (and build) dependency tree of `krate`, all features on.
fn dependency_names(root: &Path, krate: &str) -> Result<BTreeSet<String>, String> {
    let tree = output(crate::util::cargo().current_dir(root).args([
        "tree",
        "-p",
        krate,
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "--all-features",
        "--locked",
    ]))?;
    Ok(tree
        .lines()
        .skip(1) // the crate itself
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Violations of the boundaries, one line each.
pub(crate) fn violations(root: &Path) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let core = dependency_names(root, "watchpost-core")?;
    for bad in CORE_FORBIDDEN {
        if core.contains(*bad) {
            problems.push(format!("watchpost-core depends on {bad}; core must stay free of frameworks, runtimes and drivers"));
        }
    }
    for krate in library_crates(root)? {
        if NOT_FEATURE_CRATES.contains(&krate.as_str()) {
            continue;
        }
        for dep in dependency_names(root, &krate)? {
            if dep.starts_with("watchpost-") && dep != "watchpost-core" {
                problems.push(format!(
                    "{krate} depends on {dep}; feature crates depend only on watchpost-core (the server wires them together)"
                ));
            }
        }
    }
    let test_support_users = output(crate::util::cargo().current_dir(root).args([
        "tree",
        "-i",
        "watchpost-test-support",
        "-e",
        "normal,build",
        "--prefix",
        "none",
        "--workspace",
        "--locked",
    ]))
    .unwrap_or_default();
    for line in test_support_users.lines().skip(1) {
        problems.push(format!("watchpost-test-support is a normal dependency of {line}; it is for dev-dependencies only"));
    }
    Ok(problems)
}

/// Fails when any boundary is crossed.
pub(crate) fn run(root: &Path) -> Result<(), String> {
    let problems = violations(root)?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}
