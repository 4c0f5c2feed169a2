//! The built binary as a child process: bad configuration exits 2 with one clear line, keys
//! survive restarts on the default SQLite store, and SIGTERM drains in-flight requests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::support::{ROOT_KEY, Server, exchange, over_socket, watchpost};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = watchpost();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watchpost");
    wait_output(child, Duration::from_secs(30))
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("watchpost did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn assert_config_error(output: &Output, expected_fragment: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line, got: {stderr}");
    assert!(lines[0].starts_with("watchpost: error: "), "{stderr}");
    assert!(
        lines[0].contains(expected_fragment),
        "{expected_fragment:?} not in {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

/// Arguments, environment, and a fragment of the one expected error line.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn bad_configuration_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let a_file = dir.path().join("plain-file");
    std::fs::write(&a_file, "x").unwrap();
    let under_file = a_file.join("data");
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "store = [unclosed\n").unwrap();
    let cases: Vec<Case<'_>> = vec![
        (
            vec![],
            vec![("WATCHPOST_STORE", "mongo")],
            r#"invalid WATCHPOST_STORE="mongo": expected sqlite, postgres or memory"#,
        ),
        (
            vec![],
            vec![("WATCHPOST_LOG_FLUSH_MS", "60000")],
            r#"invalid WATCHPOST_LOG_FLUSH_MS="60000": expected whole milliseconds from 0 (every line at once) to 10000"#,
        ),
        (
            vec![],
            vec![
                ("WATCHPOST_STORE", "postgres"),
                ("DATABASE_URL", "http://nope"),
            ],
            "invalid DATABASE_URL",
        ),
        (
            vec![],
            vec![("WATCHPOST_STORE", "postgres")],
            "DATABASE_URL is required",
        ),
        (
            vec![],
            vec![
                ("WATCHPOST_STORE", "postgres"),
                (
                    "DATABASE_URL",
                    "postgres://postgres:hunter2@127.0.0.1:1/nothing",
                ),
            ],
            "cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:1/nothing",
        ),
        (
            vec![],
            vec![("WATCHPOST_DATA_DIR", under_file.to_str().unwrap())],
            "WATCHPOST_DATA_DIR",
        ),
        (
            vec![],
            vec![
                ("WATCHPOST_LISTEN", "localhost"),
                ("WATCHPOST_DATA_DIR", data),
            ],
            r#"invalid WATCHPOST_LISTEN="localhost""#,
        ),
        (
            vec![],
            vec![
                ("WATCHPOST_LISTEN", "192.0.2.1:4000"),
                ("WATCHPOST_STORE", "memory"),
            ],
            "cannot listen on WATCHPOST_LISTEN=192.0.2.1:4000",
        ),
        (
            vec!["--config", bad_toml.to_str().unwrap()],
            vec![],
            "bad.toml: not valid TOML",
        ),
        (
            vec!["--config", "/nonexistent/watchpost.toml"],
            vec![],
            "cannot use config file /nonexistent/watchpost.toml",
        ),
        (
            vec!["check-config"],
            vec![("WATCHPOST_SHUTDOWN_GRACE_MS", "soon")],
            "invalid WATCHPOST_SHUTDOWN_GRACE_MS",
        ),
        (
            vec!["check-config", "--store", "mongo"],
            vec![],
            r#"invalid --store="mongo""#,
        ),
    ];
    for (args, env, fragment) in cases {
        let out = run(&args, &env);
        assert_config_error(&out, fragment);
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("hunter2"),
            "secrets never printed"
        );
    }
}

#[test]
fn check_config_reports_effective_settings_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["check-config"],
        &[
            ("WATCHPOST_DATA_DIR", dir.path().to_str().unwrap()),
            ("ROOT_API_KEY", ROOT_KEY),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("WATCHPOST_ROOT_API_KEY=<set>  (ROOT_API_KEY)"),
        "{stdout}"
    );
    assert!(!stdout.contains(ROOT_KEY));
    assert!(stdout.contains("ok: the sqlite store is reachable and migrated"));
}

/// The status of `GET path` with `X-API-Key: key`.
fn status_of(addr: SocketAddr, path: &str, key: &str) -> u16 {
    exchange(addr, "GET", path, &[("X-API-Key", key)], "")
        .unwrap_or_else(|e| panic!("an HTTP answer: {e}"))
        .status
}

#[test]
fn keys_survive_restarts_on_the_default_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let env = [("WATCHPOST_DATA_DIR", data)];
    let out = run(
        &["keys", "create", "--name", "ci", "--tenant", "acme"],
        &env,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .unwrap()
        .trim()
        .to_owned();
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("id:"))
        .unwrap()
        .trim()
        .to_owned();

    let list = run(&["keys", "list"], &env);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains(&id) && listed.contains("acme") && !listed.contains(&key),
        "{listed}"
    );

    let server = Server::start(&env);
    assert_eq!(status_of(server.addr, "/auth/whoami", &key), 200);
    server.signal(Signal::SIGTERM);
    assert_eq!(server.exit_code(Duration::from_secs(10)), Some(0));

    // Restarted: still known.
    let server = Server::start(&env);
    assert_eq!(status_of(server.addr, "/auth/whoami", &key), 200);
    server.signal(Signal::SIGTERM);
    assert_eq!(server.exit_code(Duration::from_secs(10)), Some(0));

    let out = run(&["keys", "revoke", &id], &env);
    assert_eq!(out.status.code(), Some(0));
    let server = Server::start(&env);
    assert_eq!(status_of(server.addr, "/auth/whoami", &key), 401);
    let out = run(&["keys", "revoke", "ffffffffffff"], &env);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_0() {
    let server = Server::start(&[
        ("WATCHPOST_STORE", "memory"),
        ("WATCHPOST_ROOT_API_KEY", ROOT_KEY),
        ("WATCHPOST_SHUTDOWN_GRACE_MS", "10000"),
    ]);
    // A request whose body is still arriving when the signal comes.
    let body = r#"{"name":"in flight","tenantId":"acme"}"#;
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /auth/keys HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ROOT_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        &body[..10]
    )
    .unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.signal(Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));

    let refused = TcpStream::connect_timeout(&server.addr, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "new connections must be refused while draining"
    );

    s.write_all(&body.as_bytes()[10..]).unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "in-flight request completes: {response}"
    );
    assert!(response.contains("\"name\":\"in flight\""));
    assert_eq!(server.exit_code(Duration::from_secs(10)), Some(0));
}

#[test]
fn log_lines_waiting_for_their_batch_are_written_at_shutdown() {
    // A ten-second batch: nothing but the shutdown flushes the lines before the process exits.
    let addr = watchpost_test_support::free_addr();
    let mut child = watchpost()
        .env("WATCHPOST_LISTEN", addr.to_string())
        .env("WATCHPOST_STORE", "memory")
        .env("WATCHPOST_LOG_FLUSH_MS", "10000")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn watchpost");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(addr).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "watchpost exited");
        assert!(Instant::now() < deadline, "watchpost did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let reply = over_socket(
        addr,
        "GET",
        "/health/live",
        &[("X-Request-ID", "batched-1")],
        "",
    )
    .expect("an answer");
    assert_eq!(reply.status, 200);
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the process exited before the batch was due, so only the shutdown can have written it"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "telemetry configured" && l["log_flush_ms"] == 10000),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["type"] == "request" && l["requestId"] == "batched-1" && l["status"] == 200),
        "{stdout}"
    );
    assert_eq!(
        lines.last().map(|l| l["message"].clone()),
        Some(serde_json::Value::from("shutdown complete")),
        "{stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
