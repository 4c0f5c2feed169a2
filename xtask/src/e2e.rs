//! `cargo xtask e2e`: the whole product against real components, on 127.0.0.1 with ephemeral
//! ports. A release `watchpost` on PostgreSQL (a fresh database) with Redis rate limits, a real
//! Prometheus (Debian `prometheus`) scraping it with the rules of `deploy/prometheus/` plus a
//! rule that fires on demand, and a real Alertmanager (Debian `prometheus-alertmanager`)
//! routing to the server's webhook with a bearer token.
//!
//! Asserted, in order: the Prometheus target is up and `http_server_request_duration_seconds` is
//! queryable by route; the deploy rules are loaded; the on-demand alert fires, reaches
//! Alertmanager and opens exactly one incident with a timeline; acknowledging it through the API
//! is audited; the alert clears and the incident resolves; the audit chain verifies (over HTTP
//! and with `watchpost audit verify`); `/status` shows the incident in its history.
//!
//! Every process is killed on success and on failure; on failure the logs of every process and
//! the generated configurations stay under `target/e2e/`.
#![allow(clippy::print_stdout)] // Progress lines are the point.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::http::{self, encode};
use crate::procs::{self, Proc, poll, with_database};
use crate::provision;
use crate::util::{output, workspace_root};

const ROOT_KEY: &str = "e2e-root-key-0123456789abcdef";
const AM_TOKEN: &str = "e2e-alertmanager-token-0123456789";
const METRICS_TOKEN: &str = "e2e-metrics-token-0123456789";
const ALERT: &str = "WatchpostE2ETrigger";
const SERVICE: &str = "e2e-checkout";

/// Provisions the services, then runs the end-to-end test.
pub(crate) fn run() -> Result<(), String> {
    let services = provision::provision()?;
    let result = run_with(&services.env());
    drop(services);
    result
}

/// Runs the end-to-end test against provisioned services (`WATCHPOST_TEST_DATABASE_URL`,
/// `WATCHPOST_TEST_REDIS_URL`); the error names the first failed expectation.
pub(crate) fn run_with(env: &[(String, String)]) -> Result<(), String> {
    let started = Instant::now();
    let run = procs::Run::prepare(env, "e2e")?;
    let (dir, database) = (&run.dir, &run.database);
    let database_url = run.database_url();
    println!("e2e: database {database}, logs under {}", dir.display());

    let scenario_started = Instant::now();
    let result = scenario(&Stack {
        bin: &run.bin,
        dir,
        database_url: &database_url,
        redis_url: &redis_database(&run.redis_url, 9),
    });
    run.drop_database();
    match result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(dir);
            println!(
                "e2e: passed in {:.1} s: {:.1} s building the release binary, {:.1} s for the run (services, scenario, clean-up), {:.1} s of it the scenario itself",
                started.elapsed().as_secs_f64(),
                run.build.as_secs_f64(),
                started.elapsed().saturating_sub(run.build).as_secs_f64(),
                scenario_started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Err(e) => {
            println!(
                "e2e: FAILED; logs and configurations of every process are in {}",
                dir.display()
            );
            Err(e)
        }
    }
}

struct Stack<'a> {
    bin: &'a Path,
    dir: &'a Path,
    database_url: &'a str,
    redis_url: &'a str,
}

fn scenario(stack: &Stack<'_>) -> Result<(), String> {
    let dir = stack.dir;
    let trigger = Trigger::start()?;
    let wp_addr = procs::free_addr()?;
    let am_addr = procs::free_addr()?;
    let prom_addr = procs::free_addr()?;

    // watchpost
    let mut wp = Proc::spawn(
        "watchpost",
        dir,
        watchpost_cmd(stack, wp_addr, am_addr).arg("serve"),
    )?;
    let ready = wp.wait_http_ok(wp_addr, "/health/ready", Duration::from_secs(60))?;
    println!("e2e: watchpost ready on {wp_addr} after {ready:?}");

    // Alertmanager
    let am_config = dir.join("alertmanager.yml");
    write(
        &am_config,
        &format!(
            "route:\n  receiver: watchpost\n  group_by: [alertname, service]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: watchpost\n    webhook_configs:\n      - url: http://{wp_addr}/webhooks/alertmanager\n        send_resolved: true\n        max_alerts: 0\n        http_config:\n          authorization:\n            type: Bearer\n            credentials: {AM_TOKEN}\n"
        ),
    )?;
    let mut am = Proc::spawn(
        "alertmanager",
        dir,
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={am_addr}"))
            .arg("--cluster.listen-address="),
    )?;
    am.wait_http_ok(am_addr, "/-/ready", Duration::from_secs(30))?;
    println!("e2e: Alertmanager ready on {am_addr}");

    // Prometheus, with the deploy rules and a rule that fires when the trigger says so.
    let rules = dir.join("e2e-rules.yml");
    write(
        &rules,
        &format!(
            "groups:\n  - name: e2e\n    rules:\n      - alert: {ALERT}\n        expr: watchpost_e2e_trigger == 1\n        labels:\n          severity: critical\n          service: {SERVICE}\n        annotations:\n          summary: Checkout is failing (e2e)\n          runbook_url: https://runbooks.example/checkout\n"
        ),
    )?;
    let prom_config = dir.join("prometheus.yml");
    write(
        &prom_config,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n  - {}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{am_addr}']\n\
             scrape_configs:\n  - job_name: watchpost\n    authorization:\n      type: Bearer\n      credentials: {METRICS_TOKEN}\n    static_configs:\n      - targets: ['{wp_addr}']\n  \
             - job_name: e2e-trigger\n    static_configs:\n      - targets: ['{}']\n",
            workspace_root()
                .join("deploy/prometheus/alerts.yml")
                .display(),
            rules.display(),
            trigger.addr
        ),
    )?;
    let mut prom = Proc::spawn(
        "prometheus",
        dir,
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}")),
    )?;
    prom.wait_http_ok(prom_addr, "/-/ready", Duration::from_secs(60))?;
    println!("e2e: Prometheus ready on {prom_addr}");

    let root = [("Authorization", format!("Bearer {ROOT_KEY}"))];
    let root: Vec<(&str, &str)> = root.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Traffic: authenticated reads, audit writes, a 404 and an unauthenticated 401.
    for i in 0..20 {
        expect(
            http::get(wp_addr, "/incidents", &root)?,
            200,
            "GET /incidents",
        )?;
        expect(
            http::post_json(
                wp_addr,
                "/audit/events",
                &root,
                &json!({"action": "config_change", "resourceType": "e2e", "resourceId": format!("r{i}"), "payload": {"step": i}}),
            )?,
            201,
            "POST /audit/events",
        )?;
    }
    expect(
        http::get(wp_addr, "/no-such-route", &root)?,
        404,
        "GET /no-such-route",
    )?;
    expect(
        http::get(wp_addr, "/incidents", &[])?,
        401,
        "GET /incidents without a key",
    )?;

    // Prometheus scrapes watchpost, and the HTTP metric is queryable by route.
    poll(
        "the watchpost target is up in Prometheus",
        Duration::from_secs(30),
        || {
            let targets = prom_get(prom_addr, "/api/v1/targets")?;
            let up = targets["data"]["activeTargets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|t| t["labels"]["job"] == "watchpost")
                .any(|t| t["health"] == "up");
            if up {
                Ok(Some(()))
            } else {
                Err(format!("targets: {}", targets["data"]["activeTargets"]))
            }
        },
    )?;
    let routes = poll(
        "http_server_request_duration_seconds by route in Prometheus",
        Duration::from_secs(30),
        || {
            let q = prom_query(
                prom_addr,
                "sum by (http_route) (http_server_request_duration_seconds_count{job=\"watchpost\"})",
            )?;
            let routes: Vec<String> = q
                .iter()
                .filter_map(|s| s["metric"]["http_route"].as_str().map(str::to_owned))
                .collect();
            if routes.iter().any(|r| r == "/incidents")
                && routes.iter().any(|r| r == "/audit/events")
            {
                Ok(Some(routes))
            } else {
                Err(format!("routes so far: {routes:?}"))
            }
        },
    )?;
    println!("e2e: Prometheus has http_server_request_duration_seconds for routes {routes:?}");
    let rules_loaded = prom_get(prom_addr, "/api/v1/rules")?;
    let names: Vec<&str> = rules_loaded["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    for wanted in [
        "WatchpostDown",
        "WatchpostHighErrorRate",
        "WatchpostAuditSpoolAlarm",
        ALERT,
    ] {
        if !names.contains(&wanted) {
            return Err(format!(
                "Prometheus did not load rule {wanted}; loaded: {names:?}"
            ));
        }
    }
    println!(
        "e2e: Prometheus loaded {} rules (deploy/prometheus/alerts.yml and the e2e rule)",
        names.len()
    );

    // Fire the alert: Prometheus -> Alertmanager -> watchpost opens one incident.
    trigger.set(true);
    let fired_at = Instant::now();
    poll(
        "the alert is active in Alertmanager",
        Duration::from_secs(60),
        || {
            let alerts = http::get(
                am_addr,
                &format!(
                    "/api/v2/alerts?filter={}",
                    encode(&format!("alertname=\"{ALERT}\""))
                ),
                &[],
            )?
            .json()?;
            Ok(alerts
                .as_array()
                .is_some_and(|a| !a.is_empty())
                .then_some(()))
        },
    )?;
    let incident = poll(
        "one incident opened in watchpost",
        Duration::from_secs(60),
        || {
            let list = incidents_of_service(wp_addr, &root)?;
            Ok(list.into_iter().next())
        },
    )?;
    println!(
        "e2e: incident opened {:.1} s after the trigger",
        fired_at.elapsed().as_secs_f64()
    );
    let id = incident["id"]
        .as_str()
        .ok_or("incident without an id")?
        .to_owned();
    // Redeliveries (group_interval, Prometheus re-sends) must not open another one.
    std::thread::sleep(Duration::from_secs(4));
    let list = incidents_of_service(wp_addr, &root)?;
    if list.len() != 1 {
        return Err(format!(
            "expected exactly one incident for {SERVICE}, found {}: {list:?}",
            list.len()
        ));
    }
    let detail = http::get(wp_addr, &format!("/incidents/{id}"), &root)?;
    let detail = expect(detail, 200, "GET /incidents/{id}")?.json()?;
    check_incident(&detail, "triggered", &["triggered"])?;

    // Acknowledge through the API; the audit trail records it with the actor.
    let ack = http::post_json(
        wp_addr,
        &format!("/incidents/{id}/acknowledge"),
        &root,
        &json!({"note": "e2e is on it"}),
    )?;
    expect(ack, 200, "POST /incidents/{id}/acknowledge")?;
    let audited = poll(
        "the acknowledgement in the audit trail",
        Duration::from_secs(15),
        || {
            let page = http::get(
                wp_addr,
                &format!(
                    "/audit/events?action=incident_acknowledged&resourceId={}",
                    encode(&id)
                ),
                &root,
            )?
            .json()?;
            let items = page["items"].as_array().cloned().unwrap_or_default();
            Ok((!items.is_empty()).then_some(items))
        },
    )?;
    if audited.len() != 1 {
        return Err(format!(
            "expected one incident_acknowledged audit event, found {audited:?}"
        ));
    }
    println!("e2e: acknowledgement audited: {}", audited[0]);

    // Clear the alert: the resolve travels the same way and resolves the incident.
    trigger.set(false);
    let cleared_at = Instant::now();
    let resolved = poll("the incident resolved", Duration::from_secs(90), || {
        let detail = http::get(wp_addr, &format!("/incidents/{id}"), &root)?.json()?;
        Ok((detail["status"] == "resolved").then_some(detail))
    })?;
    println!(
        "e2e: incident resolved {:.1} s after the alert cleared",
        cleared_at.elapsed().as_secs_f64()
    );
    check_incident(
        &resolved,
        "resolved",
        &["triggered", "acknowledged", "resolved"],
    )?;
    let list = incidents_of_service(wp_addr, &root)?;
    if list.len() != 1 {
        return Err(format!(
            "expected exactly one incident for {SERVICE} after the resolve, found {}",
            list.len()
        ));
    }

    // The audit chain verifies, over HTTP and with the CLI against the same database.
    let report = poll(
        "GET /audit/verify reports ok",
        Duration::from_secs(20),
        || {
            let r = http::get(wp_addr, "/audit/verify", &root)?.json()?;
            if r["ok"] == true {
                Ok(Some(r))
            } else {
                Err(format!("report: {r}"))
            }
        },
    )?;
    let cli = output(watchpost_cmd(stack, wp_addr, am_addr).args(["audit", "verify", "--json"]))?;
    let cli: Value = serde_json::from_str(&cli)
        .map_err(|e| format!("audit verify --json printed non-JSON: {e}: {cli}"))?;
    if cli["ok"] != true {
        return Err(format!("watchpost audit verify failed: {cli}"));
    }
    println!(
        "e2e: audit chain verifies ({} events over HTTP, {} with the CLI)",
        report["eventsChecked"], cli["eventsChecked"]
    );

    // The status page shows the incident in its history.
    let page = expect(http::get(wp_addr, "/status", &[])?, 200, "GET /status")?;
    let html = page.text();
    if !html.contains("Checkout is failing (e2e)") {
        return Err("GET /status does not show the resolved incident in its history".to_owned());
    }
    let summary = expect(
        http::get(wp_addr, "/status/summary.json", &[])?,
        200,
        "GET /status/summary.json",
    )?
    .json()?;
    if summary["status"]["indicator"] != "none" {
        return Err(format!(
            "status indicator after the resolve: {}",
            summary["status"]
        ));
    }

    // Everything stayed up; stop in order and check the server shuts down cleanly.
    for p in [&mut wp, &mut am, &mut prom] {
        p.check_alive()?;
    }
    if !wp.terminate(Duration::from_secs(30)) {
        return Err("watchpost did not stop within 30 s of SIGTERM".to_owned());
    }
    prom.terminate(Duration::from_secs(10));
    am.terminate(Duration::from_secs(10));
    Ok(())
}

fn watchpost_cmd(stack: &Stack<'_>, addr: SocketAddr, am_addr: SocketAddr) -> Command {
    let mut c = Command::new(stack.bin);
    c.current_dir(stack.dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("WATCHPOST_LISTEN", addr.to_string())
        .env("WATCHPOST_STORE", "postgres")
        .env("DATABASE_URL", stack.database_url)
        .env("WATCHPOST_REDIS_URL", stack.redis_url)
        .env("WATCHPOST_DATA_DIR", stack.dir.join("watchpost-data"))
        .env("WATCHPOST_ROOT_API_KEY", ROOT_KEY)
        .env("WATCHPOST_ALERTMANAGER_TOKEN", AM_TOKEN)
        .env("WATCHPOST_ALERTMANAGER_URL", format!("http://{am_addr}"))
        .env("WATCHPOST_METRICS_TOKEN", METRICS_TOKEN)
        .env("WATCHPOST_PUBLIC_URL", format!("http://{addr}"))
        .env("WATCHPOST_STATUS_PAGE_NAME", "Watchpost e2e")
        .env("WATCHPOST_AUDIT_CHECKPOINT_INTERVAL_MS", "2000")
        .env("OTEL_SDK_DISABLED", "true");
    c
}

/// Incidents of the e2e service, any status.
fn incidents_of_service(addr: SocketAddr, root: &[(&str, &str)]) -> Result<Vec<Value>, String> {
    let page = http::get(
        addr,
        &format!("/incidents?service={SERVICE}&limit=100"),
        root,
    )?;
    let page = expect(page, 200, "GET /incidents?service=")?.json()?;
    Ok(page["items"].as_array().cloned().unwrap_or_default())
}

/// The incident has `status`, one alert, the e2e title and severity, and timeline entries of
/// (at least) the given types, in that order.
fn check_incident(detail: &Value, status: &str, timeline: &[&str]) -> Result<(), String> {
    let incident = if detail["incident"].is_object() {
        &detail["incident"]
    } else {
        detail
    };
    if incident["status"] != status {
        return Err(format!(
            "incident status {} (expected {status}): {detail}",
            incident["status"]
        ));
    }
    if incident["severity"] != "critical" || incident["title"] != "Checkout is failing (e2e)" {
        return Err(format!(
            "incident fields do not come from the alert: {detail}"
        ));
    }
    let alerts = detail["alerts"].as_array().map_or(0, Vec::len);
    if alerts != 1 {
        return Err(format!(
            "expected one alert on the incident, found {alerts}: {detail}"
        ));
    }
    let types: Vec<&str> = detail["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["event"]["type"].as_str())
        .collect();
    let mut rest = types.iter();
    for wanted in timeline {
        if !rest.any(|t| t == wanted) {
            return Err(format!(
                "timeline {types:?} lacks {wanted:?} in order {timeline:?}"
            ));
        }
    }
    Ok(())
}

fn expect(response: http::Response, status: u16, what: &str) -> Result<http::Response, String> {
    if response.status == status {
        Ok(response)
    } else {
        Err(format!(
            "{what}: status {} (expected {status}): {}",
            response.status,
            response.text()
        ))
    }
}

fn prom_get(addr: SocketAddr, path: &str) -> Result<Value, String> {
    let r = http::get(addr, path, &[])?;
    let v = expect(r, 200, path)?.json()?;
    if v["status"] == "success" {
        Ok(v)
    } else {
        Err(format!("{path}: {v}"))
    }
}

fn prom_query(addr: SocketAddr, query: &str) -> Result<Vec<Value>, String> {
    let v = prom_get(addr, &format!("/api/v1/query?query={}", encode(query)))?;
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `url` with its Redis database number replaced by `db`, so the run does not share keys.
fn redis_database(url: &str, db: u8) -> String {
    with_database(url, &db.to_string())
}

/// A scrape target whose one gauge says whether the e2e alert should fire.
struct Trigger {
    addr: SocketAddr,
    on: Arc<AtomicBool>,
}

impl Trigger {
    fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| format!("cannot bind the trigger target: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let on = Arc::new(AtomicBool::new(false));
        let state = on.clone();
        // The thread ends with the process; each scrape is one short connection.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let body = format!(
                    "# TYPE watchpost_e2e_trigger gauge\nwatchpost_e2e_trigger {}\n",
                    u8::from(state.load(Ordering::SeqCst))
                );
                let _ = (&stream).write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        Ok(Self { addr, on })
    }

    fn set(&self, firing: bool) {
        self.on.store(firing, Ordering::SeqCst);
    }
}
