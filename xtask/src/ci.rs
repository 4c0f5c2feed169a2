//! `cargo xtask ci`: everything a change must pass, in order, with real services.
#![allow(clippy::print_stdout)] // The summary is the point.

use std::time::Instant;

use crate::util::{run as run_command, step, workspace_root};
use crate::{boundaries, deploy, e2e, procs, provision, tidy};

/// Runs every step; the first failure stops the run.
pub(crate) fn run() -> Result<(), String> {
    let started = Instant::now();
    let root = workspace_root();
    let services = step("provision services and tools", provision::provision)?;
    let env = services.env();
    let cargo = |args: &[&str]| {
        let mut c = crate::util::cargo();
        // The same RUSTFLAGS for every step, so they share one build; warnings are errors.
        c.current_dir(&root)
            .args(args)
            .env("RUSTFLAGS", "-D warnings")
            .envs(env.clone());
        c
    };
    step("cargo fmt --check", || {
        run_command(&mut cargo(&["fmt", "--all", "--check"]))
    })?;
    step("cargo clippy", || {
        run_command(&mut cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--locked",
        ]))
    })?;
    step("cargo test", || {
        run_command(&mut cargo(&[
            "test",
            "--workspace",
            "--all-features",
            "--locked",
        ]))
    })?;
    step("cargo doc", || {
        run_command(
            cargo(&[
                "doc",
                "--workspace",
                "--no-deps",
                "--all-features",
                "--locked",
            ])
            .env("RUSTDOCFLAGS", "-D warnings"),
        )
    })?;
    step(
        "each library crate builds alone with its default features",
        || {
            for krate in boundaries::library_crates(&root)? {
                run_command(&mut cargo(&["check", "-p", &krate, "--lib", "--locked"]))?;
            }
            Ok(())
        },
    )?;
    step("tidy", || tidy::run(&root))?;
    step("validate deploy/", || deploy::run(&root, false))?;
    step("dependency boundaries", || boundaries::run(&root))?;
    // Its own step, so the build (minutes from scratch on 2 cores) and the e2e run (seconds) are
    // reported apart; e2e then finds the binary up to date.
    step("build the release server", || {
        procs::release_watchpost().map(drop)
    })?;
    step(
        "cargo xtask e2e (release server, PostgreSQL, Redis, Prometheus, Alertmanager)",
        || e2e::run_with(&env),
    )?;
    drop(services);
    println!(
        "cargo xtask ci: all steps passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
