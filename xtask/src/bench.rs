//! `cargo xtask bench [--quick]`: every crate's criterion benchmarks, a wrk comparison of one
//! hello-world handler bare, behind the full watchpost stack and behind the stack people assemble
//! today, and the server's idle memory and start-to-ready time. The results replace the generated
//! part of `docs/benchmarks.md` (between the `xtask-bench` markers) and are printed.
//!
//! Every figure written comes from this run: criterion's `new/estimates.json` files newer than
//! the run's start, wrk's output, `/proc/<pid>/status`. wrk is the load generator (Debian `wrk`);
//! the servers are `examples/bench_stacks/` and the release `watchpost` binary. The server is
//! pinned to core 0 and wrk to core 1 so they do not fight over a core, and the stacks are measured
//! in alternation (bare, full, ..., then again) so drift on a shared machine hits them alike.
#![allow(clippy::print_stdout)] // Progress lines and the generated report are the point.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::procs::{self, Proc};
use crate::util::{self, on_path, output, step, workspace_root};
use crate::{http, provision};

/// The criterion benchmarks: package, bench target, features.
const CRITERION: &[(&str, &str, &[&str])] = &[
    ("watchpost-metrics", "metrics", &[]),
    ("watchpost-correlation", "correlation", &[]),
    ("watchpost-ratelimit", "ratelimit", &["redis"]),
    ("watchpost-audit", "ingest", &[]),
    ("watchpost-incident", "incident", &[]),
    ("watchpost-server", "stack", &[]),
];

/// Benchmarks that are watchpost's own although their name does not say so.
const OURS_BY_ID: &[&str] = &["audit_ingest_postgres/writer_group_commit_copy_durable"];

/// Watchpost benchmarks compared with named ones only, not with their whole group: each of the
/// server's stacks against the peer stack with the same logging (and the bare handler).
const COMPARED_WITH: &[(&str, &[&str])] = &[
    ("stack/watchpost", &["stack/peer", "stack/bare"]),
    ("stack/watchpost_nolog", &["stack/peer_nolog", "stack/bare"]),
];

/// The measurements of `examples/bench_stacks/`, in the order they are made: id, `--stack`,
/// the path wrk loads, label. `GET /hello` is a read the server's default audit policy does not
/// record, so there the full stack's figure is its layers' own cost; the last row loads
/// `/admin/hello`, which the default policy records on every request (the audit store's ingest).
const STACKS: &[(&str, &str, &str, &str)] = &[
    ("bare", "bare", HELLO_PATH, "bare axum"),
    (
        "full",
        "full",
        HELLO_PATH,
        "watchpost full stack, JSON request log line",
    ),
    (
        "full-nolog",
        "full-nolog",
        HELLO_PATH,
        "watchpost full stack, request log line off",
    ),
    (
        "peer",
        "peer",
        HELLO_PATH,
        "tower-http request id + TraceLayer (JSON line), axum-prometheus, tower_governor",
    ),
    (
        "peer-nolog",
        "peer-nolog",
        HELLO_PATH,
        "the same peer stack, per-request log off",
    ),
    (
        "full-audited",
        "full",
        AUDITED_PATH,
        "watchpost full stack on an audited route: every request recorded (SQLite, async)",
    ),
];

/// The route the comparison loads (see `examples/bench_stacks/main.rs`).
const HELLO_PATH: &str = "/hello";

/// The same handler on a route the default audit policy records.
const AUDITED_PATH: &str = "/admin/hello";

/// The root key the full stack is started with and wrk presents (to every stack alike).
const API_KEY: &str = "bench-root-key-0123456789abcdef";

/// wrk connections (one wrk thread, on its own core).
const WRK_CONNECTIONS: u32 = 64;

/// The markers around the generated part of `docs/benchmarks.md`.
const BEGIN: &str = "<!-- xtask-bench:begin -->";
const END: &str = "<!-- xtask-bench:end -->";

/// The hand-written section the generated one replaced (found when the markers are missing).
const OLD_HEADING: &str = "## The whole server (issue 10)";

/// The heading of the generated section.
const HEADING: &str =
    "## The whole server, and every benchmark in one run: `cargo xtask bench` (issue 10)";

/// How long each part runs.
#[derive(Debug, Clone, Copy)]
struct Plan {
    quick: bool,
    rounds: usize,
    warmup: Duration,
    measure: Duration,
    idle: Duration,
    starts: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                rounds: 1,
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(3),
                idle: Duration::from_secs(2),
                starts: 3,
            }
        } else {
            Self {
                quick,
                rounds: 3,
                warmup: Duration::from_secs(3),
                measure: Duration::from_secs(10),
                idle: Duration::from_secs(5),
                starts: 5,
            }
        }
    }
}

/// Runs everything and rewrites the generated part of `docs/benchmarks.md`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut quick = false;
    for a in args {
        match a.as_str() {
            "--quick" => quick = true,
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: cargo xtask bench [--quick]"
                ));
            }
        }
    }
    let plan = Plan::new(quick);
    let started = Instant::now();
    let work = procs::target_dir().join("bench");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;

    let services = step(
        "provision PostgreSQL, Redis and tools",
        provision::provision,
    )?;
    step("wrk and taskset", ensure_wrk)?;
    let criterion = step("criterion benchmarks", || {
        criterion_all(&services.env(), plan)
    })?;
    let stacks_bin = step("build the bench stacks", build_stacks)?;
    let server_bin = step("build the release server", procs::release_watchpost)?;
    let pinning = Pinning::detect();
    let wrk = step("wrk: bare, full and peer stacks", || {
        wrk_all(&stacks_bin, &work, plan, &pinning)
    })?;
    let server = step("server idle memory and start-to-ready", || {
        server_figures(&server_bin, &work, plan)
    })?;
    drop(services);

    let machine = Machine::detect();
    let report = Report {
        plan,
        machine,
        pinning,
        criterion,
        wrk,
        server,
        took: started.elapsed(),
    }
    .markdown();
    let doc = workspace_root().join("docs/benchmarks.md");
    step("rewrite docs/benchmarks.md", || {
        replace_generated(&doc, &report)
    })?;
    println!("\n{report}");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tools

fn ensure_wrk() -> Result<(), String> {
    if !on_path("taskset") {
        return Err("taskset is missing; install util-linux".to_owned());
    }
    if on_path("wrk") {
        return Ok(());
    }
    provision::apt_install(&["wrk"])?;
    if on_path("wrk") {
        Ok(())
    } else {
        Err("wrk is still missing after apt-get install wrk".to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion

/// One criterion benchmark's result.
#[derive(Debug, Clone)]
struct BenchResult {
    group: String,
    function: String,
    full_id: String,
    /// Median time per iteration, nanoseconds.
    median_ns: f64,
    /// Elements or bytes per iteration, when the benchmark declares a throughput.
    throughput: Option<(f64, &'static str)>,
}

impl BenchResult {
    /// Time per element (or byte, or iteration when no throughput is declared).
    fn unit_ns(&self) -> f64 {
        self.median_ns / self.throughput.map_or(1.0, |(n, _)| n)
    }

    fn last_segment(&self) -> &str {
        self.function.rsplit('/').next().unwrap_or(&self.function)
    }

    /// The group and the function's prefix: benchmarks in the same bucket measure the same thing.
    fn bucket(&self) -> (String, String) {
        let prefix = self.function.rsplit_once('/').map_or("", |(p, _)| p);
        (self.group.clone(), prefix.to_owned())
    }

    fn is_ours(&self) -> bool {
        self.last_segment().contains("watchpost") || OURS_BY_ID.contains(&self.full_id.as_str())
    }

    /// Whether `other` is one of the benchmarks this (watchpost) one is compared with: those
    /// [`COMPARED_WITH`] names for it, else the others in its bucket.
    fn compares_with(&self, other: &Self) -> bool {
        if other.is_ours() {
            return false;
        }
        match COMPARED_WITH.iter().find(|(id, _)| *id == self.full_id) {
            Some((_, with)) => with.contains(&other.full_id.as_str()),
            None => other.bucket() == self.bucket(),
        }
    }
}

/// One `cargo bench` run: its command, its results and the figures it printed itself.
#[derive(Debug)]
struct CrateBench {
    package: &'static str,
    command: String,
    results: Vec<BenchResult>,
    printed: Vec<String>,
}

fn criterion_all(env: &[(String, String)], plan: Plan) -> Result<Vec<CrateBench>, String> {
    let home = procs::target_dir().join("criterion");
    let mut all = Vec::new();
    // A result belongs to the first run that wrote it (the slack below reaches into the previous run).
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (package, bench, features) in CRITERION {
        let mut args: Vec<String> = vec![
            "bench".into(),
            "--locked".into(),
            "-p".into(),
            (*package).into(),
        ];
        if !features.is_empty() {
            args.push("--features".into());
            args.push(features.join(","));
        }
        args.extend(["--bench".into(), (*bench).into(), "--".into()]);
        if plan.quick {
            args.push("--quick".into());
        }
        args.push("--noplot".into());
        let command = format!("cargo {}", args.join(" "));
        println!("--> {command}");
        // Criterion's results are recognised by age; a little slack for coarse file timestamps.
        let since = SystemTime::now() - Duration::from_secs(2);
        let mut cmd = util::cargo();
        cmd.args(&args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            // Criterion resolves a relative CARGO_TARGET_DIR against the package; pin the output.
            .env("CRITERION_HOME", &home);
        let stdout = run_echoing(&mut cmd)?;
        let mut results = read_criterion(&home, since)?;
        results.retain(|r| seen.insert(r.full_id.clone()));
        if results.is_empty() {
            return Err(format!(
                "{command} wrote no results under {}",
                home.display()
            ));
        }
        let ids: BTreeSet<&str> = results.iter().map(|r| r.full_id.as_str()).collect();
        let printed = stdout
            .lines()
            .filter(|l| !is_criterion_line(l, &ids))
            .map(str::to_owned)
            .collect();
        all.push(CrateBench {
            package,
            command: command.replace(" --noplot", ""),
            results,
            printed,
        });
    }
    Ok(all)
}

/// Runs `cmd` with stdout piped through (echoed as it comes) and returns it; stderr is inherited.
fn run_echoing(cmd: &mut Command) -> Result<String, String> {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let mut all = String::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line.map_err(|e| format!("reading the output of {shown}: {e}"))?;
            println!("{line}");
            all.push_str(&line);
            all.push('\n');
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {shown}: {e}"))?;
    if status.success() {
        Ok(all)
    } else {
        Err(format!("{shown} failed with {status}"))
    }
}

/// Whether `line` is criterion's own progress or report (anything else the benchmark printed).
fn is_criterion_line(line: &str, ids: &BTreeSet<&str>) -> bool {
    let t = line.trim();
    t.is_empty()
        || line.starts_with(char::is_whitespace)
        || ids.contains(t)
        || [
            "Benchmarking ",
            "Found ",
            "Gnuplot ",
            "Warning: ",
            "WARNING: ",
            "Performance has ",
            "No change in performance",
            "Change within noise",
            "running ",
            "test result",
        ]
        .iter()
        .any(|p| t.starts_with(p))
        || t.contains("time:   [")
        || t.contains("thrpt:  [")
}

/// Every `*/new/benchmark.json` under `home` whose estimates were written since `since`.
fn read_criterion(home: &Path, since: SystemTime) -> Result<Vec<BenchResult>, String> {
    let mut dirs = Vec::new();
    find_new_dirs(home, &mut dirs);
    let mut results = Vec::new();
    for dir in dirs {
        let estimates = dir.join("estimates.json");
        let fresh = std::fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if !fresh {
            continue;
        }
        let read = |p: &Path| -> Result<serde_json::Value, String> {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        };
        let bench = read(&dir.join("benchmark.json"))?;
        let est = read(&estimates)?;
        let median_ns = est["median"]["point_estimate"]
            .as_f64()
            .ok_or_else(|| format!("{}: no median", estimates.display()))?;
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let group = text(&bench["group_id"]).unwrap_or_default();
        let mut function = text(&bench["function_id"]).unwrap_or_default();
        if let Some(value) = text(&bench["value_str"]) {
            function = if function.is_empty() {
                value
            } else {
                format!("{function}/{value}")
            };
        }
        let full_id = text(&bench["full_id"]).unwrap_or_else(|| format!("{group}/{function}"));
        results.push(BenchResult {
            group,
            function,
            full_id,
            median_ns,
            throughput: throughput(&bench["throughput"]),
        });
    }
    results.sort_by(|a, b| a.full_id.cmp(&b.full_id));
    Ok(results)
}

fn find_new_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") && path.join("benchmark.json").is_file() {
            out.push(path);
        } else if path.file_name().is_none_or(|n| n != "report") {
            find_new_dirs(&path, out);
        }
    }
}

/// Criterion's `throughput` field: `{"Elements": n}`, `{"Bytes": n}`, `{"BytesDecimal": n}`.
fn throughput(v: &serde_json::Value) -> Option<(f64, &'static str)> {
    let obj = v.as_object()?;
    let (kind, n) = obj.iter().next()?;
    let n = n.as_f64().or_else(|| n["elements"].as_f64())?;
    let unit = if kind.starts_with("Bytes") {
        "B"
    } else {
        "elem"
    };
    Some((n, unit))
}

// ---------------------------------------------------------------------------------------------
// wrk

/// Where the server and wrk run.
#[derive(Debug, Clone)]
struct Pinning {
    server: Vec<String>,
    client: Vec<String>,
    note: String,
}

impl Pinning {
    fn detect() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if cores >= 2 {
            Self {
                server: vec!["taskset".into(), "-c".into(), "0".into()],
                client: vec!["taskset".into(), "-c".into(), "1".into()],
                note: "Server pinned to core 0 (`taskset -c 0`), wrk to core 1 (`taskset -c 1`)"
                    .into(),
            }
        } else {
            Self {
                server: Vec::new(),
                client: Vec::new(),
                note: format!(
                    "Not pinned: this machine has {cores} core(s); server and wrk share it"
                ),
            }
        }
    }
}

/// One wrk measurement.
#[derive(Debug, Clone, Copy)]
struct WrkRun {
    requests_per_sec: f64,
    p99_us: f64,
    socket_errors: u64,
    rss_kib: Option<u64>,
    /// `watchpost_audit_events_recorded_total` after the run (full stacks).
    audited: Option<u64>,
}

/// Every round of every stack.
#[derive(Debug)]
struct WrkResults {
    runs: BTreeMap<&'static str, Vec<WrkRun>>,
    server_command: String,
    wrk_command: String,
}

impl WrkResults {
    fn median_rps(&self, stack: &str) -> f64 {
        median(
            self.runs[stack]
                .iter()
                .map(|r| r.requests_per_sec)
                .collect(),
        )
    }

    fn median_p99(&self, stack: &str) -> f64 {
        median(self.runs[stack].iter().map(|r| r.p99_us).collect())
    }
}

fn build_stacks() -> Result<PathBuf, String> {
    util::run(util::cargo().args([
        "build",
        "--release",
        "--locked",
        "--example",
        "bench_stacks",
        "-p",
        "watchpost-server",
    ]))?;
    let bin = procs::target_dir().join("release/examples/bench_stacks");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} was not built", bin.display()))
    }
}

fn wrk_all(bin: &Path, work: &Path, plan: Plan, pinning: &Pinning) -> Result<WrkResults, String> {
    let mut runs: BTreeMap<&'static str, Vec<WrkRun>> = BTreeMap::new();
    for round in 1..=plan.rounds {
        for (stack, arg, path, _) in STACKS {
            let r = wrk_one(bin, work, (stack, arg, path), round, plan, pinning)?;
            println!(
                "round {round}/{} {stack}: {:.0} req/s, p99 {}",
                plan.rounds,
                r.requests_per_sec,
                fmt_us(r.p99_us)
            );
            runs.entry(stack).or_default().push(r);
        }
    }
    let secs = plan.measure.as_secs();
    Ok(WrkResults {
        runs,
        server_command: format!(
            "{}target/release/examples/bench_stacks --stack <bare|full|full-nolog|peer|peer-nolog> --listen 127.0.0.1:<port> --data-dir <fresh dir> --api-key {API_KEY} > /dev/null",
            pinning
                .server
                .iter()
                .map(|a| format!("{a} "))
                .collect::<String>()
        ),
        wrk_command: format!(
            "{}wrk -t1 -c{WRK_CONNECTIONS} -d{secs}s --latency -H 'Authorization: Bearer {API_KEY}' http://127.0.0.1:<port>{HELLO_PATH} (or {AUDITED_PATH})",
            pinning
                .client
                .iter()
                .map(|a| format!("{a} "))
                .collect::<String>()
        ),
    })
}

fn wrk_one(
    bin: &Path,
    work: &Path,
    (stack, arg, path): (&'static str, &str, &str),
    round: usize,
    plan: Plan,
    pinning: &Pinning,
) -> Result<WrkRun, String> {
    let addr = procs::free_addr()?;
    let data = work.join(format!("{stack}-{round}"));
    // Logs go to /dev/null (as a deployment's collector would take them off the box); stderr to the log.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$@\" > /dev/null", "sh"])
        .args(&pinning.server)
        .arg(bin)
        .args([
            "--stack",
            arg,
            "--listen",
            &addr.to_string(),
            "--api-key",
            API_KEY,
        ])
        .arg("--data-dir")
        .arg(&data);
    let mut server = Proc::spawn(&format!("{stack}-{round}"), &work.join("logs"), &mut cmd)?;
    server.wait_http_ok(addr, path, Duration::from_secs(60))?;
    wrk(addr, path, plan.warmup, pinning)?;
    let text = wrk(addr, path, plan.measure, pinning)?;
    server.check_alive()?;
    let parsed = parse_wrk(&text).map_err(|e| format!("{stack}: {e}\n{text}"))?;
    if parsed.non_2xx > 0 {
        return Err(format!(
            "{stack} answered {} requests with a status other than 2xx/3xx (a rate-limit denial?); see {}\n{text}",
            parsed.non_2xx,
            server.log.display()
        ));
    }
    let rss_kib = server.rss_kib();
    let audited = if path == AUDITED_PATH {
        Some(audited_events(addr).map_err(|e| format!("{stack}: {e}"))?)
    } else {
        None
    };
    if audited == Some(0) {
        return Err(format!(
            "{stack} served the load but recorded no audit event"
        ));
    }
    server.terminate(Duration::from_secs(15));
    let _ = std::fs::remove_dir_all(&data);
    Ok(WrkRun {
        requests_per_sec: parsed.requests_per_sec,
        p99_us: parsed.p99_us,
        socket_errors: parsed.socket_errors,
        rss_kib,
        audited,
    })
}

fn wrk(
    addr: SocketAddr,
    path: &str,
    duration: Duration,
    pinning: &Pinning,
) -> Result<String, String> {
    let (program, pre) = match pinning.client.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => ("wrk".to_owned(), Vec::new()),
    };
    let mut cmd = Command::new(program);
    if !pinning.client.is_empty() {
        cmd.args(pre).arg("wrk");
    }
    cmd.args([
        "-t1".to_owned(),
        format!("-c{WRK_CONNECTIONS}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--latency".to_owned(),
        "-H".to_owned(),
        format!("Authorization: Bearer {API_KEY}"),
        format!("http://{addr}{path}"),
    ]);
    output(&mut cmd)
}

/// `watchpost_audit_events_recorded_total` from the full stack's `/metrics`.
fn audited_events(addr: SocketAddr) -> Result<u64, String> {
    let r = http::get(addr, "/metrics", &[])?;
    if r.status != 200 {
        return Err(format!("GET /metrics answered {}", r.status));
    }
    let text = r.text();
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("watchpost_audit_events_recorded_total")?;
            rest.split_whitespace().last()?.parse::<f64>().ok()
        })
        .map(|v| v as u64)
        .ok_or_else(|| "no watchpost_audit_events_recorded_total in /metrics".to_owned())
}

#[derive(Debug, PartialEq)]
struct WrkOutput {
    requests_per_sec: f64,
    p99_us: f64,
    non_2xx: u64,
    socket_errors: u64,
}

fn parse_wrk(text: &str) -> Result<WrkOutput, String> {
    let mut rps = None;
    let mut p99 = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in text.lines() {
        let t = line.trim();
        if let Some(v) = t.strip_prefix("Requests/sec:") {
            rps = v.trim().parse::<f64>().ok();
        } else if let Some(v) = t.strip_prefix("99%") {
            p99 = parse_duration_us(v.trim());
        } else if let Some(v) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().unwrap_or(u64::MAX);
        } else if let Some(v) = t.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 12"
            socket_errors = v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    Ok(WrkOutput {
        requests_per_sec: rps.ok_or("no Requests/sec line in wrk's output")?,
        p99_us: p99.ok_or("no 99% line in wrk's output (was --latency given?)")?,
        non_2xx,
        socket_errors,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.00s`, `1.50m`.
fn parse_duration_us(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let factor = match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        _ => return None,
    };
    Some(n * factor)
}

// ---------------------------------------------------------------------------------------------
// The server: idle memory and start-to-ready

#[derive(Debug)]
struct ServerFigures {
    idle_rss_kib: u64,
    idle_secs: u64,
    fresh_ms: Vec<f64>,
    existing_ms: Vec<f64>,
    command: String,
}

fn server_figures(bin: &Path, work: &Path, plan: Plan) -> Result<ServerFigures, String> {
    let logs = work.join("logs");
    let start = |name: &str, data: &Path| -> Result<(Proc, SocketAddr, f64), String> {
        let addr = procs::free_addr()?;
        let mut cmd = Command::new(bin);
        cmd.env("WATCHPOST_LISTEN", addr.to_string())
            .env("WATCHPOST_STORE", "sqlite")
            .env("WATCHPOST_DATA_DIR", data)
            .env("WATCHPOST_ROOT_API_KEY", API_KEY)
            .current_dir(work);
        let t = Instant::now();
        let mut p = Proc::spawn(name, &logs, &mut cmd)?;
        p.wait_http_ok(addr, "/health/ready", Duration::from_secs(30))?;
        Ok((p, addr, t.elapsed().as_secs_f64() * 1e3))
    };

    // Idle memory: a fresh data dir, ready, then idle.
    let idle_dir = work.join("server-idle");
    let (mut p, _, _) = start("server-idle", &idle_dir)?;
    std::thread::sleep(plan.idle);
    p.check_alive()?;
    let idle_rss_kib = p.rss_kib().ok_or("cannot read VmRSS of the idle server")?;
    p.terminate(Duration::from_secs(15));

    let mut fresh_ms = Vec::new();
    for i in 0..plan.starts {
        let dir = work.join(format!("server-fresh-{i}"));
        let (mut p, _, ms) = start(&format!("server-fresh-{i}"), &dir)?;
        p.terminate(Duration::from_secs(15));
        let _ = std::fs::remove_dir_all(&dir);
        fresh_ms.push(ms);
    }
    // The idle run left a migrated store with a signing key and a checkpoint: an existing data dir.
    let mut existing_ms = Vec::new();
    for i in 0..plan.starts {
        let (mut p, _, ms) = start(&format!("server-existing-{i}"), &idle_dir)?;
        p.terminate(Duration::from_secs(15));
        existing_ms.push(ms);
    }
    let _ = std::fs::remove_dir_all(&idle_dir);
    Ok(ServerFigures {
        idle_rss_kib,
        idle_secs: plan.idle.as_secs(),
        fresh_ms,
        existing_ms,
        command: "cargo build --release --locked -p watchpost-server --bin watchpost && WATCHPOST_STORE=sqlite WATCHPOST_DATA_DIR=<dir> WATCHPOST_LISTEN=127.0.0.1:<port> WATCHPOST_ROOT_API_KEY=<key> target/release/watchpost"
            .to_owned(),
    })
}

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Debug)]
struct Machine {
    cores: usize,
    memory: String,
    cpu: String,
    os: String,
    kernel: String,
    rustc: String,
    kind: String,
    commit: String,
    date: String,
}

impl Machine {
    fn detect() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cmd = |program: &str, args: &[&str]| {
            output(Command::new(program).args(args))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|e| format!("unknown ({e})"))
        };
        let meminfo = read("/proc/meminfo");
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or("unknown".to_owned(), |kib| {
                format!("{:.1} GiB", kib / 1048576.0)
            });
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let dirty = output(
            Command::new("git")
                .args(["status", "--porcelain", "--untracked-files=no"])
                .current_dir(workspace_root()),
        )
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
        let commit = cmd(
            "git",
            &[
                "-C",
                &workspace_root().display().to_string(),
                "rev-parse",
                "--short",
                "HEAD",
            ],
        );
        Self {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory,
            cpu,
            os,
            kernel: cmd("uname", &["-r"]),
            rustc: cmd("rustc", &["--version"]),
            kind: std::env::var("WATCHPOST_BENCH_MACHINE_KIND")
                .unwrap_or_else(|_| "rust-svc".to_owned()),
            commit: if dirty {
                format!("{commit} with uncommitted changes")
            } else {
                commit
            },
            date: cmd("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

#[derive(Debug)]
struct Report {
    plan: Plan,
    machine: Machine,
    pinning: Pinning,
    criterion: Vec<CrateBench>,
    wrk: WrkResults,
    server: ServerFigures,
    took: Duration,
}

/// One goal: what, where it comes from, the measured figure, the bound.
struct Goal {
    what: &'static str,
    source: &'static str,
    measured: f64,
    shown: String,
    at_least: Option<f64>,
    at_most: Option<f64>,
}

impl Goal {
    fn met(&self) -> bool {
        self.at_least.is_none_or(|b| self.measured >= b)
            && self.at_most.is_none_or(|b| self.measured <= b)
    }
}

impl Report {
    fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let plan = &self.plan;
        s.push_str(&format!(
            "Generated by `cargo xtask bench{}` on {} at commit {} in {:.0} minutes; do not edit by hand (the command rewrites everything between the markers).\n\n",
            if plan.quick { " --quick" } else { "" },
            m.date,
            m.commit,
            self.took.as_secs_f64() / 60.0
        ));
        if plan.quick {
            s.push_str("**Smoke run (`--quick`)**: criterion's quick mode and short wrk runs; the figures only show that every part runs. Run `cargo xtask bench` on a quiet machine for figures to quote.\n\n");
        }
        s.push_str(&format!(
            "Machine: the project's machine kind `{}`: {} cores ({}), {} memory, {}, kernel {}, {}.\n\n",
            m.kind, m.cores, m.cpu, m.memory, m.os, m.kernel, m.rustc
        ));
        self.wrk_section(&mut s);
        self.server_section(&mut s);
        self.goals_section(&mut s);
        self.criterion_section(&mut s);
        s
    }

    fn wrk_section(&self, s: &mut String) {
        let w = &self.wrk;
        let p = &self.plan;
        s.push_str("### One hello-world handler under wrk, three stacks\n\n");
        s.push_str(&format!(
            "The same handler (`GET {HELLO_PATH}`, 13 bytes) served bare, behind the full watchpost stack and behind the stack people assemble today (`crates/watchpost-server/examples/bench_stacks/` says exactly what each holds); `{HELLO_PATH}` is a read the server's default audit policy does not record, so the full stack's figure there is its layers' own cost, and the last row loads the same handler at `{AUDITED_PATH}`, which the default policy records on every request. {}; each server is a fresh process (a fresh SQLite data dir for the full stack) with its log lines going to `/dev/null`; after a {} s warm-up, wrk measures for {} s; the stacks alternate, {} round(s). Figures are the median over the rounds; every request carries the same root API key.\n\n",
            self.pinning.note,
            p.warmup.as_secs(),
            p.measure.as_secs(),
            p.rounds
        ));
        s.push_str("Commands:\n\n```sh\ncargo build --release --locked --example bench_stacks -p watchpost-server\n");
        s.push_str(&format!("{}\n{}\n```\n\n", w.server_command, w.wrk_command));
        s.push_str("| stack | req/s | p99 latency | vs bare | vs the peer stack with the same logging | RSS after the run | req/s of each round |\n| --- | --- | --- | --- | --- | --- | --- |\n");
        let bare = w.median_rps("bare");
        for (stack, _, _, label) in STACKS {
            let rps = w.median_rps(stack);
            let vs_peer = match *stack {
                "full" => format!("{:.2}x", rps / w.median_rps("peer")),
                "full-nolog" => format!("{:.2}x", rps / w.median_rps("peer-nolog")),
                _ => String::new(),
            };
            let runs = &w.runs[stack];
            let rss = runs
                .iter()
                .filter_map(|r| r.rss_kib)
                .max()
                .map_or("?".to_owned(), fmt_kib);
            let mut rounds: Vec<String> = runs
                .iter()
                .map(|r| format!("{:.0}", r.requests_per_sec))
                .collect();
            let errors: u64 = runs.iter().map(|r| r.socket_errors).sum();
            if errors > 0 {
                rounds.push(format!("({errors} socket errors)"));
            }
            let audited: Vec<String> = runs
                .iter()
                .filter_map(|r| r.audited)
                .map(|a| a.to_string())
                .collect();
            if !audited.is_empty() {
                rounds.push(format!("(audit events recorded: {})", audited.join(", ")));
            }
            s.push_str(&format!(
                "| {label} (`{stack}`) | {rps:.0} | {} | {:.2}x | {vs_peer} | {rss} | {} |\n",
                fmt_us(w.median_p99(stack)),
                rps / bare,
                rounds.join(", ")
            ));
        }
        s.push('\n');
    }

    fn server_section(&self, s: &mut String) {
        let v = &self.server;
        s.push_str("### The `watchpost` server: idle memory and start-to-ready\n\n");
        s.push_str(&format!(
            "The release binary on SQLite with a root key. Idle memory is `VmRSS` {} s after the first 200 from `/health/ready` on a fresh data dir. Start-to-ready is from spawning the process to the first 200 from `/health/ready` (polled every 5 ms over new connections), {} starts on a fresh data dir and {} on an existing one (migrated, with its signing key and checkpoints).\n\n",
            v.idle_secs,
            v.fresh_ms.len(),
            v.existing_ms.len()
        ));
        s.push_str(&format!("```sh\n{}\n```\n\n", v.command));
        s.push_str("| what | median | all runs |\n| --- | --- | --- |\n");
        s.push_str(&format!(
            "| idle resident memory | {} | |\n",
            fmt_kib(v.idle_rss_kib)
        ));
        for (what, ms) in [
            ("start-to-ready, fresh data dir", &v.fresh_ms),
            ("start-to-ready, existing data dir", &v.existing_ms),
        ] {
            s.push_str(&format!(
                "| {what} | {:.0} ms | {} |\n",
                median(ms.clone()),
                ms.iter()
                    .map(|m| format!("{m:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        s.push('\n');
    }

    fn goals(&self) -> Vec<Goal> {
        let w = &self.wrk;
        let bare = w.median_rps("bare");
        let full = w.median_rps("full");
        let nolog = w.median_rps("full-nolog");
        let peer = w.median_rps("peer");
        let peer_nolog = w.median_rps("peer-nolog");
        let ratio = |what, source, x: f64, bound| Goal {
            what,
            source,
            measured: x,
            shown: format!("{x:.2}x"),
            at_least: Some(bound),
            at_most: None,
        };
        let rss_mib = self.server.idle_rss_kib as f64 / 1024.0;
        let fresh = median(self.server.fresh_ms.clone());
        let existing = median(self.server.existing_ms.clone());
        vec![
            ratio(
                "full stack, request log line off, vs bare: at least 0.90x",
                "design brief, issue",
                nolog / bare,
                0.90,
            ),
            ratio(
                "full stack with the JSON log line vs bare: at least 0.75x",
                "design brief",
                full / bare,
                0.75,
            ),
            ratio(
                "full stack vs the peer stack, both logging a JSON line per request: at least 2x",
                "design brief",
                full / peer,
                2.0,
            ),
            ratio(
                "full stack vs the peer stack, both logging: at least 1.0x",
                "issue",
                full / peer,
                1.0,
            ),
            ratio(
                "full stack vs the peer stack, neither logging per request: at least 1.0x",
                "issue",
                nolog / peer_nolog,
                1.0,
            ),
            Goal {
                what: "idle resident memory: at most 20 MiB",
                source: "design brief, issue",
                measured: rss_mib,
                shown: format!("{rss_mib:.1} MiB"),
                at_least: None,
                at_most: Some(20.0),
            },
            Goal {
                what: "start to ready on SQLite, fresh data dir: at most 200 ms",
                source: "issue",
                measured: fresh,
                shown: format!("{fresh:.0} ms"),
                at_least: None,
                at_most: Some(200.0),
            },
            Goal {
                what: "start to ready on SQLite, existing data dir: at most 200 ms",
                source: "issue",
                measured: existing,
                shown: format!("{existing:.0} ms"),
                at_least: None,
                at_most: Some(200.0),
            },
        ]
    }

    fn goals_section(&self, s: &mut String) {
        s.push_str("### Against the goals\n\n| goal | from | measured | met |\n| --- | --- | --- | --- |\n");
        for g in self.goals() {
            s.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                g.what,
                g.source,
                g.shown,
                if g.met() { "yes" } else { "**no**" }
            ));
        }
        s.push('\n');
    }

    fn criterion_section(&self, s: &mut String) {
        s.push_str("### Every criterion benchmark\n\n");
        let named = COMPARED_WITH
            .iter()
            .map(|(id, with)| {
                let with: Vec<String> = with.iter().map(|w| format!("`{w}`")).collect();
                format!("`{id}` only with {}", with.join(" and "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        s.push_str(&format!("Each crate's benchmarks measure watchpost and its peers in the same run, with PostgreSQL and Redis provisioned as for `cargo xtask ci`. The median is criterion's median time per iteration; throughput is per second at that median when the benchmark declares one. For a watchpost benchmark, the last column compares it with the others in its group (same group and same prefix; {named}): their time per element divided by its own, so above 1 means watchpost is faster.\n\n"));
        for c in &self.criterion {
            s.push_str(&format!("#### {}\n\n`{}`\n\n", c.package, c.command));
            s.push_str("| benchmark | median | throughput | watchpost vs the others in its group |\n| --- | --- | --- | --- |\n");
            for r in &c.results {
                let thrpt = r.throughput.map_or(String::new(), |(n, unit)| {
                    fmt_rate(n / (r.median_ns / 1e9), unit)
                });
                let versus = if r.is_ours() {
                    c.results
                        .iter()
                        .filter(|o| r.compares_with(o))
                        .map(|o| format!("{:.2}x {}", o.unit_ns() / r.unit_ns(), o.last_segment()))
                        .collect::<Vec<_>>()
                        .join(", ")
                } else {
                    String::new()
                };
                s.push_str(&format!(
                    "| `{}` | {} | {thrpt} | {versus} |\n",
                    r.full_id,
                    fmt_ns(r.median_ns)
                ));
            }
            if !c.printed.is_empty() {
                s.push_str("\nPrinted by the benchmark itself:\n\n```text\n");
                for line in &c.printed {
                    s.push_str(line);
                    s.push('\n');
                }
                s.push_str("```\n");
            }
            s.push('\n');
        }
    }
}

/// Replaces what lies between the markers in `doc` with `body`; the first time, replaces the
/// hand-written issue-10 section with a heading and the markers. Nothing else in the file changes.
fn replace_generated(doc: &Path, body: &str) -> Result<(), String> {
    let text =
        std::fs::read_to_string(doc).map_err(|e| format!("cannot read {}: {e}", doc.display()))?;
    let new = splice(&text, body)?;
    std::fs::write(doc, new).map_err(|e| format!("cannot write {}: {e}", doc.display()))
}

fn splice(text: &str, body: &str) -> Result<String, String> {
    let generated = format!("{BEGIN}\n{}\n{END}", body.trim_end());
    if let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) {
        if e < b {
            return Err(format!("{END} comes before {BEGIN} in docs/benchmarks.md"));
        }
        return Ok(format!(
            "{}{generated}{}",
            &text[..b],
            &text[e + END.len()..]
        ));
    }
    let start = text.find(OLD_HEADING).ok_or_else(|| {
        format!("docs/benchmarks.md has neither the {BEGIN} markers nor a section {OLD_HEADING:?}")
    })?;
    let after = start + OLD_HEADING.len();
    let end = text[after..]
        .find("\n## ")
        .map_or(text.len(), |i| after + i + 1);
    let rest = &text[end..];
    Ok(format!(
        "{}{HEADING}\n\n{generated}\n{}{rest}",
        &text[..start],
        if rest.is_empty() { "" } else { "\n" }
    ))
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn fmt_us(us: f64) -> String {
    fmt_ns(us * 1e3)
}

fn fmt_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn fmt_rate(per_sec: f64, unit: &str) -> String {
    let (v, prefix) = if per_sec >= 1e9 {
        (per_sec / 1e9, "G")
    } else if per_sec >= 1e6 {
        (per_sec / 1e6, "M")
    } else if per_sec >= 1e3 {
        (per_sec / 1e3, "k")
    } else {
        (per_sec, "")
    };
    format!("{v:.2} {prefix}{unit}/s")
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:4000/admin/hello
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   650.12us  100.00us   5.00ms   90.00%
    Req/Sec    98.00k     2.00k  100.00k    80.00%
  Latency Distribution
     50%  640.00us
     75%  700.00us
     90%  800.00us
     99%    1.23ms
  980000 requests in 10.00s, 120.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  98000.50
Transfer/sec:     12.00MB
";

    #[test]
    fn wrk_output_is_parsed() {
        let w = parse_wrk(WRK).unwrap();
        assert_eq!(
            w,
            WrkOutput {
                requests_per_sec: 98000.50,
                p99_us: 1230.0,
                non_2xx: 7,
                socket_errors: 5
            }
        );
        assert!(parse_wrk("Requests/sec: 1").is_err());
    }

    #[test]
    fn the_generated_part_replaces_the_old_section_then_only_itself() {
        let doc =
            "# B\n\nintro\n\n## A\n\na\n\n## The whole server (issue 10)\n\nold\n\n## Z\n\nz\n";
        let once = splice(doc, "FIRST").unwrap();
        assert!(once.contains(&format!("{HEADING}\n\n{BEGIN}\nFIRST\n{END}\n\n## Z\n")));
        assert!(once.starts_with("# B\n\nintro\n\n## A\n\na\n\n"));
        assert!(!once.contains("old"));
        let twice = splice(&once.replace("## Z", "## Z edited"), "SECOND").unwrap();
        assert!(twice.contains(&format!("{BEGIN}\nSECOND\n{END}")));
        assert!(twice.contains("## Z edited"));
        assert!(!twice.contains("FIRST"));
        let last = splice("x\n\n## The whole server (issue 10)\n\nold\n", "b").unwrap();
        assert_eq!(last, format!("x\n\n{HEADING}\n\n{BEGIN}\nb\n{END}\n"));
    }

    #[test]
    fn criterion_lines_are_told_from_printed_figures() {
        let ids: BTreeSet<&str> = ["decision/1t_10k_warm/watchpost"].into();
        for l in [
            "Benchmarking decision/1t_10k_warm/watchpost: Warming up for 3.0000 s",
            "decision/1t_10k_warm/watchpost",
            "                        time:   [28.0 ns 28.3 ns 28.6 ns]",
            "layer/overhead/bare     time:   [1.0 µs 1.1 µs 1.2 µs]",
            "Found 3 outliers among 100 measurements (3.00%)",
            "",
        ] {
            assert!(is_criterion_line(l, &ids), "{l}");
        }
        assert!(!is_criterion_line(
            "memory/watchpost: 50 B per key by RSS delta",
            &ids
        ));
    }

    #[test]
    fn each_stack_is_compared_with_the_peer_with_the_same_logging() {
        let result = |full_id: &str| {
            let (group, function) = full_id.split_once('/').unwrap();
            BenchResult {
                group: group.to_owned(),
                function: function.to_owned(),
                full_id: full_id.to_owned(),
                median_ns: 1.0,
                throughput: None,
            }
        };
        let all = [
            "stack/bare",
            "stack/peer",
            "stack/peer_nolog",
            "stack/watchpost",
            "stack/watchpost_nolog",
            "decision/1t/governor",
            "decision/1t/watchpost_no_clock",
            "decision/2t/governor",
        ]
        .map(result);
        let with = |id: &str| {
            let r = all.iter().find(|r| r.full_id == id).unwrap();
            all.iter()
                .filter(|o| r.compares_with(o))
                .map(|o| o.full_id.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(with("stack/watchpost"), ["stack/bare", "stack/peer"]);
        assert_eq!(
            with("stack/watchpost_nolog"),
            ["stack/bare", "stack/peer_nolog"]
        );
        assert_eq!(
            with("decision/1t/watchpost_no_clock"),
            ["decision/1t/governor"]
        );
    }

    #[test]
    fn durations_and_medians() {
        assert_eq!(parse_duration_us("812.00us"), Some(812.0));
        assert_eq!(parse_duration_us("2.00s"), Some(2e6));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
