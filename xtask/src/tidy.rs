//! Tidy checks that keep the tree honest, run by `cargo xtask tidy`, by `cargo xtask ci` and as unit
//! tests: every `.rs` file opens with `//!`; library code holds no `todo!`, `unimplemented!` or
//! `dbg!`; every crate has its README, example and complete metadata; `docs/configuration.md`
//! documents exactly the variables the server's configuration table reads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_rust_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("xtask"), &mut files);
    files.sort();
    files
}

fn relative(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Files whose first line is not a `//!` doc line.
pub(crate) fn missing_module_docs(root: &Path) -> Vec<String> {
    all_rust_files(root)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .map(|text| !text.lines().next().unwrap_or_default().starts_with("//!"))
                .unwrap_or(true)
        })
        .map(|p| relative(root, &p))
        .collect()
}

/// `todo!`, `unimplemented!` and `dbg!` in library code (`crates/*/src`).
pub(crate) fn placeholder_macros(root: &Path) -> Vec<String> {
    let forbidden = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("dbg", "!("),
    ];
    let mut found = Vec::new();
    for path in all_rust_files(root) {
        let rel = relative(root, &path);
        if !rel.starts_with("crates/") || !rel.contains("/src/") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            if forbidden.iter().any(|m| code.contains(m)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

/// Crates missing a README, an example, or a metadata field.
pub(crate) fn incomplete_crates(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join("crates")) else {
        return vec!["crates/ is missing".to_owned()];
    };
    for entry in entries.filter_map(|e| e.ok()) {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        if !name.starts_with("watchpost-") {
            problems.push(format!(
                "crates/{name}: crate folders are named watchpost-*"
            ));
        }
        if !manifest.contains(&format!("name = \"{name}\"")) {
            problems.push(format!(
                "crates/{name}: the package name must equal the folder name"
            ));
        }
        for field in [
            "description",
            "keywords",
            "license.workspace",
            "repository.workspace",
            "readme",
        ] {
            if !manifest.lines().any(|l| l.trim_start().starts_with(field)) {
                problems.push(format!("crates/{name}/Cargo.toml: missing `{field}`"));
            }
        }
        if !manifest.contains("[lints]") || !manifest.contains("workspace = true") {
            problems.push(format!(
                "crates/{name}/Cargo.toml: missing `[lints] workspace = true`"
            ));
        }
        if !dir.join("README.md").is_file() {
            problems.push(format!("crates/{name}: missing README.md"));
        }
        let has_example = std::fs::read_dir(dir.join("examples"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .any(|e| e.path().extension().is_some_and(|x| x == "rs"))
            })
            .unwrap_or(false);
        if !has_example && name != "watchpost-server" {
            problems.push(format!(
                "crates/{name}: missing a runnable example in examples/"
            ));
        }
    }
    problems
}

/// The variables the server's configuration table declares (`setting!("VAR", ...)` in config.rs).
pub(crate) fn config_variables(root: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join("crates/watchpost-server/src/config.rs"))
        .unwrap_or_default();
    text.split("setting!(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"'))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// The `OTEL_*` variables watchpost-correlation reads (string literals in its sources).
pub(crate) fn otel_variables(root: &Path) -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root.join("crates/watchpost-correlation/src"), &mut files);
    let mut vars = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for rest in text.split("\"OTEL_").skip(1) {
            let Some(name) = rest.split('"').next() else {
                continue;
            };
            let full = format!("OTEL_{name}");
            if !name.is_empty()
                && !full.ends_with('_')
                && full.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            {
                vars.insert(full);
            }
        }
    }
    vars
}

/// The variables in the first column of the tables in `docs/configuration.md` (`| \`VAR\` | ...`).
pub(crate) fn documented_variables(root: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root.join("docs/configuration.md")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|v| {
            v.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// Differences between the configuration table in code and in the docs.
pub(crate) fn config_doc_drift(root: &Path) -> Vec<String> {
    let mut code = config_variables(root);
    code.extend(otel_variables(root));
    let docs = documented_variables(root);
    let mut drift: Vec<String> = code
        .difference(&docs)
        .map(|v| format!("{v} is read by the server but not documented in docs/configuration.md"))
        .collect();
    drift.extend(docs.difference(&code).map(|v| {
        format!("{v} is documented in docs/configuration.md but the server does not read it")
    }));
    if code.is_empty() {
        drift.push("no settings found in crates/watchpost-server/src/config.rs".to_owned());
    }
    drift
}

/// Every tidy check; all findings at once.
pub(crate) fn run(root: &Path) -> Result<(), String> {
    let mut findings = Vec::new();
    findings.extend(
        missing_module_docs(root)
            .into_iter()
            .map(|f| format!("{f}: first line must be a `//!` doc line")),
    );
    findings.extend(
        placeholder_macros(root)
            .into_iter()
            .map(|f| format!("{f}: placeholder macro in library code")),
    );
    findings.extend(incomplete_crates(root));
    findings.extend(config_doc_drift(root));
    if findings.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} finding(s):\n{}",
            findings.len(),
            findings.join("\n")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::workspace_root;

    #[test]
    fn every_rust_file_opens_with_a_module_doc() {
        assert_eq!(missing_module_docs(&workspace_root()), Vec::<String>::new());
    }

    #[test]
    fn no_placeholder_macros_in_library_code() {
        assert_eq!(placeholder_macros(&workspace_root()), Vec::<String>::new());
    }

    #[test]
    fn every_crate_is_complete() {
        assert_eq!(incomplete_crates(&workspace_root()), Vec::<String>::new());
    }

    #[test]
    fn configuration_doc_matches_the_settings_table() {
        assert_eq!(config_doc_drift(&workspace_root()), Vec::<String>::new());
    }

    #[test]
    fn the_checks_catch_what_they_look_for() {
        let dir = std::env::temp_dir().join(format!("xtask-tidy-{}", std::process::id()));
        let src = dir.join("crates/watchpost-demo/src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(
            src.join("lib.rs"),
            format!("fn f() {{ {}; }}\n", concat!("todo", "!()")),
        )
        .unwrap();
        std::fs::write(
            dir.join("crates/watchpost-demo/Cargo.toml"),
            "[package]\nname = \"watchpost-demo\"\n",
        )
        .unwrap();
        assert_eq!(
            missing_module_docs(&dir),
            vec!["crates/watchpost-demo/src/lib.rs".to_owned()]
        );
        assert_eq!(placeholder_macros(&dir).len(), 1);
        let incomplete = incomplete_crates(&dir);
        assert!(
            incomplete.iter().any(|p| p.contains("missing README.md")),
            "{incomplete:?}"
        );
        assert!(
            incomplete.iter().any(|p| p.contains("`description`")),
            "{incomplete:?}"
        );
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(
            dir.join("docs/configuration.md"),
            "| `WATCHPOST_NOPE` | x |\n",
        )
        .unwrap();
        let drift = config_doc_drift(&dir);
        assert!(
            drift.iter().any(|d| d.contains("WATCHPOST_NOPE")),
            "{drift:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
