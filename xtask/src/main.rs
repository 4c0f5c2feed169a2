//! `cargo xtask`: all of Watchpost's automation, in Rust (no shell scripts).
//!
//! | command | what it does |
//! | --- | --- |
//! | `ci` | provision services and tools, then fmt, clippy, tests, docs, tidy, dependency boundaries |
//! | `provision` | only provision; prints the environment the tests use |
//! | `tidy` | the tidy checks alone |
//! | `boundaries` | the dependency-boundary checks alone |
//! | `deploy [--write]` | validate `deploy/` with promtool, amtool, hadolint, kubernetes-validate (`--write` regenerates the PrometheusRule) |
#![allow(clippy::print_stdout, clippy::print_stderr)] // A command-line tool reports on stdout and stderr.

mod boundaries;
mod ci;
mod deploy;
mod provision;
mod tidy;
mod util;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("provision") => provision::provision().map(|services| {
            for (k, v) in services.env() {
                println!("export {k}={v}");
            }
            // Keep throwaway services for the caller only while this process lives: stop them now.
            drop(services);
        }),
        Some("tidy") => tidy::run(&util::workspace_root()),
        Some("boundaries") => boundaries::run(&util::workspace_root()),
        Some("deploy") => deploy::run(
            &util::workspace_root(),
            args.get(1).map(String::as_str) == Some("--write"),
        ),
        _ => {
            eprintln!("usage: cargo xtask <ci|provision|tidy|boundaries|deploy [--write]>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
