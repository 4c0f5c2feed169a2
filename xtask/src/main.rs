//! `cargo xtask`: all of Watchpost's automation, in Rust (no shell scripts).
//!
//! | command | what it does |
//! | --- | --- |
//! | `ci` | provision services and tools, then fmt, clippy, tests, docs, tidy, dependency boundaries |
//! | `provision` | only provision; prints the environment the tests use |
//! | `tidy` | the tidy checks alone |
//! | `boundaries` | the dependency-boundary checks alone |
//! | `deploy [--write]` | validate `deploy/` with promtool, amtool, hadolint, kubernetes-validate (`--write` regenerates the PrometheusRule) |
//! | `e2e` | the real-stack end-to-end test: release server on PostgreSQL and Redis, real Prometheus and Alertmanager (part of `ci`) |
//! | `soak [--seconds N]` | two replicas under mixed load with PostgreSQL cut for 20 s; report and plot under `target/soak/` |
//! | `bench [--quick]` | every crate's criterion benchmarks, the wrk stack comparison, idle memory and start-to-ready; rewrites `docs/benchmarks.md` |
#![allow(clippy::print_stdout, clippy::print_stderr)] // A command-line tool reports on stdout and stderr.

mod bench;
mod boundaries;
mod ci;
mod deploy;
mod e2e;
mod http;
mod procs;
mod provision;
mod soak;
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
        Some("e2e") => e2e::run(),
        Some("soak") => soak::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <ci|provision|tidy|boundaries|deploy [--write]|e2e|soak [--seconds N]|bench [--quick]>"
            );
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
