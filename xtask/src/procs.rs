//! Child processes for `e2e`, `soak` and `bench`: started with their output in a log file,
//! waited for over HTTP, stopped with SIGTERM or SIGKILL, and always killed on drop, so no
//! run leaves a process behind whether it passes or fails.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;
use crate::util::{output, run, workspace_root};

/// A running child process whose stdout and stderr go to `log`.
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// Starts `cmd` with its output appended to `<dir>/<name>.log`.
    pub(crate) fn spawn(name: &str, dir: &Path, cmd: &mut Command) -> Result<Self, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join(format!("{name}.log"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            log,
            child: Some(child),
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Fails when the process has exited, naming its status and log.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            return Err(format!(
                "{} exited with {status}; see {}",
                self.name,
                self.log.display()
            ));
        }
        Ok(())
    }

    /// Waits until `GET path` on `addr` answers 200 (failing early when the process dies).
    pub(crate) fn wait_http_ok(
        &mut self,
        addr: SocketAddr,
        path: &str,
        limit: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            self.check_alive()?;
            if http::request(addr, "GET", path, &[], None, Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200)
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > limit {
                return Err(format!(
                    "{} did not answer 200 on {path} within {limit:?}; see {}",
                    self.name,
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Resident memory in KiB.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// SIGTERM, then waits up to `grace` before SIGKILL. Returns whether it exited by itself.
    pub(crate) fn terminate(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Builds the release `watchpost` binary and returns its path.
pub(crate) fn release_watchpost() -> Result<PathBuf, String> {
    let root = workspace_root();
    run(crate::util::cargo().current_dir(&root).args([
        "build",
        "--release",
        "--locked",
        "-p",
        "watchpost-server",
        "--bin",
        "watchpost",
    ]))?;
    let bin = target_dir().join("release/watchpost");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!("{} was not built", bin.display()))
    }
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A free TCP port on 127.0.0.1.
pub(crate) fn free_addr() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// Polls `check` every 250 ms until it returns `Ok(Some(_))`, failing after `limit` with the
/// last observation.
pub(crate) fn poll<T>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("nothing observed yet");
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {limit:?} (last: {last})"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs one SQL statement with `psql` against `url`.
pub(crate) fn psql(url: &str, sql: &str) -> Result<(), String> {
    output(
        Command::new("psql")
            .arg(url)
            .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
            .env("PGCONNECT_TIMEOUT", "5"),
    )
    .map(drop)
}

/// `url` with its database path replaced by `database` (PostgreSQL and Redis URLs).
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(slash) => &base[..after_scheme + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What `e2e` and `soak` start from: the provisioned URLs, the release binary, an empty scratch
/// directory `target/<name>/` and a fresh PostgreSQL database `watchpost_<name>_<pid>`.
pub(crate) struct Run {
    /// The provisioned PostgreSQL URL (its own database, used to create and drop the fresh one).
    pub(crate) admin_url: String,
    pub(crate) redis_url: String,
    pub(crate) bin: PathBuf,
    /// How long building (or finding up to date) the release binary took.
    pub(crate) build: std::time::Duration,
    pub(crate) dir: PathBuf,
    pub(crate) database: String,
}

impl Run {
    /// Builds the release binary, empties the scratch directory and creates the database.
    pub(crate) fn prepare(env: &[(String, String)], name: &str) -> Result<Self, String> {
        let var = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("provisioning gave no {k}"))
        };
        let admin_url = var("WATCHPOST_TEST_DATABASE_URL")?;
        let redis_url = var("WATCHPOST_TEST_REDIS_URL")?;
        let build_started = std::time::Instant::now();
        let bin = release_watchpost()?;
        let build = build_started.elapsed();
        let dir = target_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let database = format!("watchpost_{name}_{}", std::process::id());
        psql(&admin_url, &format!("DROP DATABASE IF EXISTS {database}"))?;
        psql(&admin_url, &format!("CREATE DATABASE {database}"))?;
        Ok(Self {
            admin_url,
            redis_url,
            bin,
            build,
            dir,
            database,
        })
    }

    /// The URL of the fresh database.
    pub(crate) fn database_url(&self) -> String {
        with_database(&self.admin_url, &self.database)
    }

    /// Drops the fresh database (best effort; called on success and failure).
    pub(crate) fn drop_database(&self) {
        let _ = psql(
            &self.admin_url,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
        );
    }
}
