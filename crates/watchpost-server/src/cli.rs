//! The command line: `watchpost [serve]`, `migrate`, `check-config`, `keys create|list|revoke`.
//!
//! Configuration problems print one line, `watchpost: error: ...`, and exit with status 2.
#![allow(clippy::print_stdout, clippy::print_stderr)] // A command-line tool talks on stdout and stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use watchpost_core::{Clock, Role, SystemClock};

use crate::config::{Config, FlagOverrides, LogFormat, RawValues};
use crate::keys::{self, RevokeOutcome};
use crate::serve::{self, StartupError};

/// Watchpost: production operations server.
#[derive(Debug, Parser)]
#[command(name = "watchpost", version, about)]
pub struct Cli {
    /// TOML configuration file (environment variables and flags override it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address (overrides WATCHPOST_LISTEN).
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Store backend: sqlite, postgres or memory (overrides WATCHPOST_STORE).
    #[arg(long, global = true, value_name = "STORE")]
    store: Option<String>,
    /// Data directory (overrides WATCHPOST_DATA_DIR).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<String>,
    /// PostgreSQL URL (overrides DATABASE_URL).
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Run the store migrations and exit.
    Migrate,
    /// Check the configuration without starting; prints the effective settings (secrets masked).
    CheckConfig,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Audit trail tools.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Probe a running instance's liveness (for container HEALTHCHECK without curl); exit 0 when live.
    Healthcheck {
        /// The URL to probe; by default /health/live on the configured listen address (0.0.0.0 becomes 127.0.0.1).
        #[arg(long)]
        url: Option<String>,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify every stream's hash chain and signed checkpoints; exit 1 when anything is wrong.
    Verify {
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// A human name for the key.
        #[arg(long)]
        name: String,
        /// The tenant the key belongs to (required for tenant keys).
        #[arg(long)]
        tenant: Option<String>,
        /// tenant (default) or root.
        #[arg(long, default_value = "tenant")]
        role: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id.
    Revoke {
        /// The key id (the part after `wpk_`, before the second `_`).
        id: String,
    },
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("watchpost: error: {message}");
    ExitCode::from(2)
}

/// Logging for the one-shot commands: to stderr, so stdout carries only their output.
fn init_command_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    // A subscriber installed already (tests) is fine.
    drop(result);
}

/// Parses the command line and runs it; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let flags = FlagOverrides {
        listen: cli.listen.clone(),
        store: cli.store.clone(),
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
    };
    let raw = match RawValues::collect(cli.config.as_deref(), &flags) {
        Ok(raw) => raw,
        Err(e) => return fail(e),
    };
    let config = match Config::from_raw(&raw) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if !matches!(command, Command::Serve) {
        init_command_logging(&config);
    }
    runtime.block_on(async move {
        match command {
            Command::Serve => {
                let telemetry = match crate::wiring::correlation::init_telemetry(&config) {
                    Ok(t) => t,
                    Err(e) => return fail(e),
                };
                let result = serve::run(config, telemetry).await;
                // Lines still waiting for their batch go out before the process does.
                watchpost_correlation::flush_logs();
                match result {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(e),
                }
            }
            Command::Migrate => match serve::open_stores(&config).await {
                Ok(stores) => {
                    println!("migrations applied to the {} store", stores.kind.as_str());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            },
            Command::CheckConfig => check_config(&config, &raw).await,
            Command::Keys(k) => keys_command(config, k).await,
            Command::Audit(AuditCommand::Verify { json }) => audit_verify(config, json).await,
            Command::Healthcheck { url, timeout_ms } => {
                let url = url.unwrap_or_else(|| crate::healthcheck::default_url(config.listen));
                match crate::healthcheck::probe(&url, std::time::Duration::from_millis(timeout_ms))
                    .await
                {
                    Ok(status) if (200..300).contains(&status) => ExitCode::SUCCESS,
                    Ok(status) => {
                        eprintln!("watchpost: unhealthy: {url} answered {status}");
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("watchpost: unhealthy: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    })
}

async fn check_config(config: &Config, raw: &RawValues) -> ExitCode {
    for (var, value, source) in raw.describe() {
        println!("{var}={value}  ({source})");
    }
    match serve::open_stores(config).await {
        Ok(stores) => {
            println!(
                "ok: the {} store is reachable and migrated",
                stores.kind.as_str()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn audit_verify(config: Config, json: bool) -> ExitCode {
    let stores = match serve::open_stores(&config).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let signer = match crate::wiring::audit::audit_config(&config).load_signer() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot load the audit signing key: {e}")),
    };
    let options = crate::wiring::audit::verify_options(&config, signer.public_key_hex());
    let store = crate::wiring::audit::store(&stores);
    let report = match watchpost_audit::verify(store.as_ref(), &options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("watchpost: error: verification could not read the trail: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!(
            "{}: {} events, {} checkpoints, {} streams, in {} ms",
            if report.ok { "ok" } else { "FAILED" },
            report.events_checked,
            report.checkpoints_checked,
            report.streams.len(),
            report.duration_ms
        );
        for stream in &report.streams {
            println!(
                "  {} {}: {} events{}",
                if stream.ok { "ok    " } else { "FAILED" },
                stream.stream,
                stream.events,
                if stream.ok {
                    String::new()
                } else {
                    format!(": {}", serde_json::to_string(stream).unwrap_or_default())
                }
            );
        }
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn keys_command(config: Config, command: KeysCommand) -> ExitCode {
    if config.store == crate::config::StoreKind::Memory {
        return fail(
            "`watchpost keys` needs a persistent store: set WATCHPOST_STORE to sqlite or postgres",
        );
    }
    let stores = match serve::open_stores(&config).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let store = keys::store_for(&stores);
    match command {
        KeysCommand::Create { name, tenant, role } => {
            let body = crate::keys_api::CreateKey {
                name,
                tenant_id: tenant,
                role: Some(role),
            };
            let (name, tenant, role) = match crate::keys_api::validate_create(body) {
                Ok(v) => v,
                Err(p) => return fail(p.detail.unwrap_or(p.title)),
            };
            let new = keys::generate(&name, tenant, role, SystemClock.now());
            if let Err(e) = store.insert(new.record.clone()).await {
                eprintln!("watchpost: error: {e}");
                return ExitCode::FAILURE;
            }
            println!("id:     {}", new.record.id);
            println!("name:   {}", new.record.name);
            println!("tenant: {}", new.record.tenant_id.as_deref().unwrap_or("-"));
            println!("role:   {}", new.record.role);
            println!("key:    {}", new.key);
            println!("Store the key now: it is not shown again.");
            if role == Role::Root {
                println!("This key has the root role.");
            }
            ExitCode::SUCCESS
        }
        KeysCommand::List => match store.list().await {
            Ok(all) => {
                println!(
                    "{:<14} {:<24} {:<20} {:<7} {:<26} REVOKED",
                    "ID", "NAME", "TENANT", "ROLE", "CREATED"
                );
                for k in all {
                    println!(
                        "{:<14} {:<24} {:<20} {:<7} {:<26} {}",
                        k.id,
                        k.name,
                        k.tenant_id.as_deref().unwrap_or("-"),
                        k.role,
                        k.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        k.revoked_at
                            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                            .unwrap_or_else(|| "-".to_owned()),
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("watchpost: error: {e}");
                ExitCode::FAILURE
            }
        },
        KeysCommand::Revoke { id } => match store.revoke(&id, SystemClock.now()).await {
            Ok(RevokeOutcome::Revoked) => {
                println!("revoked {id}");
                ExitCode::SUCCESS
            }
            Ok(RevokeOutcome::AlreadyRevoked) => {
                println!("{id} was already revoked");
                ExitCode::SUCCESS
            }
            Ok(RevokeOutcome::NotFound) => {
                eprintln!("watchpost: error: no API key has id {id}; see `watchpost keys list`");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("watchpost: error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

impl From<StartupError> for ExitCode {
    fn from(_: StartupError) -> Self {
        ExitCode::from(2)
    }
}
