//! Provisioning: PostgreSQL, Redis and the external tools the tests use.
//!
//! PostgreSQL and Redis on 127.0.0.1 are used when they answer; otherwise throwaway instances are
//! started on ephemeral ports (installing Debian's `postgresql` / `redis-server` first when missing
//! and running as root) and stopped when [`Services`] drops. Tools (`promtool`,
//! `prometheus-alertmanager`, `amtool`, `chromium`) are installed with apt-get when missing. When
//! something cannot be had, provisioning fails naming what to install: no test is skipped silently.
#![allow(clippy::print_stdout)] // Progress lines are the point.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{is_root, on_path, output, run, workspace_root};

/// Provisioned services: the environment for tests, and what to stop afterwards.
#[derive(Default)]
pub(crate) struct Services {
    env: Vec<(String, String)>,
    cleanups: Vec<Box<dyn FnOnce()>>,
}

impl Services {
    /// `WATCHPOST_TEST_DATABASE_URL` and `WATCHPOST_TEST_REDIS_URL`.
    pub(crate) fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for cleanup in self.cleanups.drain(..).rev() {
            cleanup();
        }
    }
}

/// Tools the tests run, with the Debian package that provides each.
const TOOLS: &[(&str, &str)] = &[
    ("promtool", "prometheus"),
    ("prometheus", "prometheus"),
    ("prometheus-alertmanager", "prometheus-alertmanager"),
    ("amtool", "prometheus-alertmanager"),
    ("chromium", "chromium"),
];

/// Installs Debian `packages` (as root), waiting up to five minutes for another apt or dpkg run to
/// release its lock instead of failing at once.
pub(crate) fn apt_install(packages: &[&str]) -> Result<(), String> {
    if !is_root() || !on_path("apt-get") {
        return Err(format!(
            "missing Debian packages {packages:?}; install them (apt-get install {}) and run again",
            packages.join(" ")
        ));
    }
    println!("installing {packages:?} with apt-get");
    let noninteractive = |c: &mut Command| {
        c.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["-o", "DPkg::Lock::Timeout=300"]);
    };
    let mut update = Command::new("apt-get");
    noninteractive(&mut update);
    update.args(["update", "-qq"]);
    run(&mut update)?;
    let mut install = Command::new("apt-get");
    noninteractive(&mut install);
    install
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(packages);
    run(&mut install)
}

fn ensure_tools() -> Result<(), String> {
    let mut missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, _)| !on_path(tool))
        .map(|(_, package)| *package)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)?;
    match TOOLS.iter().find(|(tool, _)| !on_path(tool)) {
        Some((tool, package)) => Err(format!(
            "{tool} is still missing after installing {package}"
        )),
        None => Ok(()),
    }
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn redis_pong(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

fn wait_until(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not come up within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn as_postgres_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn start_postgres(services: &mut Services) -> Result<String, String> {
    if postgres_bin_dir().is_none() {
        apt_install(&["postgresql"])?;
    }
    let bin = postgres_bin_dir()
        .ok_or("PostgreSQL binaries not found under /usr/lib/postgresql; install postgresql")?;
    let port = free_port()?;
    let dir = workspace_root()
        .join("target/xtask")
        .join(format!("pg-{port}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir))?;
    }
    let data = dir.join("data");
    run(as_postgres_user(&bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .stdout(std::process::Stdio::null()))?;
    run(as_postgres_user(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("postgres.log"))
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.display()
        ))
        .args(["-w", "start"]))?;
    let pg_ctl = bin.join("pg_ctl");
    services.cleanups.push(Box::new(move || {
        let _ = as_postgres_user(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "stop"])
            .status();
        let _ = std::fs::remove_dir_all(&dir);
    }));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    wait_until("throwaway PostgreSQL", Duration::from_secs(30), || {
        answers(addr)
    })?;
    println!("started a throwaway PostgreSQL on {addr}");
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

fn start_redis(services: &mut Services) -> Result<String, String> {
    if !on_path("redis-server") {
        apt_install(&["redis-server"])?;
    }
    let port = free_port()?;
    let dir = workspace_root()
        .join("target/xtask")
        .join(format!("redis-{port}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start redis-server: {e}"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = wait_until("throwaway Redis", Duration::from_secs(15), || {
        redis_pong(addr)
    });
    if let Err(e) = started {
        let _ = child.kill();
        return Err(e);
    }
    services.cleanups.push(Box::new(move || {
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(&dir);
    }));
    println!("started a throwaway Redis on {addr}");
    Ok(format!("redis://127.0.0.1:{port}/"))
}

/// Provisions everything the tests need.
pub(crate) fn provision() -> Result<Services, String> {
    let mut services = Services::default();
    ensure_tools()?;

    let database_url = match std::env::var("WATCHPOST_TEST_DATABASE_URL") {
        Ok(url) => url,
        Err(_) if answers(([127, 0, 0, 1], 5432).into()) && pg_accepts_postgres_user() => {
            "postgres://postgres@127.0.0.1:5432/postgres".to_owned()
        }
        Err(_) => start_postgres(&mut services)?,
    };
    let redis_url = match std::env::var("WATCHPOST_TEST_REDIS_URL") {
        Ok(url) => url,
        Err(_) if redis_pong(([127, 0, 0, 1], 6379).into()) => "redis://127.0.0.1:6379/".to_owned(),
        Err(_) => start_redis(&mut services)?,
    };
    println!("PostgreSQL for tests: {database_url}");
    println!("Redis for tests: {redis_url}");
    services
        .env
        .push(("WATCHPOST_TEST_DATABASE_URL".to_owned(), database_url));
    services
        .env
        .push(("WATCHPOST_TEST_REDIS_URL".to_owned(), redis_url));
    Ok(services)
}

/// Whether the local server lets `postgres` in without a password (`psql` when present; else assume yes).
fn pg_accepts_postgres_user() -> bool {
    if !on_path("psql") {
        return true;
    }
    output(
        Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                "SELECT 1",
            ])
            .env("PGCONNECT_TIMEOUT", "3")
            .env("PGPASSWORD", ""),
    )
    .map(|o| o.trim() == "1")
    .unwrap_or(false)
}
