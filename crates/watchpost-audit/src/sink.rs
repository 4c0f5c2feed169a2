//! Extra sinks that receive a copy of every sealed batch: [`ConsoleSink`] (JSON lines on stdout)
//! and [`FileSink`] (JSON lines, fsync per batch, daily and size rotation, retention in days).
//!
//! The primary [`AuditStore`](crate::AuditStore) is what queries and verification read; sinks
//! are copies for log shipping and offline archives, written after the batch is durable.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use futures_util::future::BoxFuture;
use watchpost_core::SharedClock;

use crate::error::{AuditError, Result};
use crate::event::AuditEvent;

/// A destination that receives every sealed batch.
pub trait AuditSink: Send + Sync + Debug + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Writes one batch.
    fn write_batch<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<()>>;
}

fn json_lines(events: &[AuditEvent]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(events.len() * 512);
    for e in events {
        if serde_json::to_writer(&mut buf, e).is_ok() {
            buf.push(b'\n');
        }
    }
    buf
}

/// JSON lines on standard output (for log collectors).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleSink;

impl AuditSink for ConsoleSink {
    fn name(&self) -> &'static str {
        "console"
    }

    fn write_batch<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<()>> {
        let buf = json_lines(events);
        Box::pin(async move {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf)
                .and_then(|()| out.flush())
                .map_err(|e| AuditError::io("<stdout>", e))
        })
    }
}

/// Settings of a [`FileSink`].
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// Directory for `audit-YYYY-MM-DD.N.jsonl` files.
    pub dir: PathBuf,
    /// Start a new file once the current one passes this size.
    pub max_file_bytes: u64,
    /// Delete files whose day is older than this many days (0 keeps everything).
    pub retention_days: u32,
}

#[derive(Debug)]
struct OpenFile {
    day: NaiveDate,
    index: u32,
    file: File,
    bytes: u64,
}

/// JSON lines in daily files, rotated by size, fsynced per batch, pruned by age.
#[derive(Debug, Clone)]
pub struct FileSink {
    config: FileSinkConfig,
    clock: SharedClock,
    state: Arc<Mutex<Option<OpenFile>>>,
}

fn file_name(day: NaiveDate, index: u32) -> String {
    format!("audit-{}.{index}.jsonl", day.format("%Y-%m-%d"))
}

fn parse_name(name: &str) -> Option<(NaiveDate, u32)> {
    let rest = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    let (day, index) = rest.split_once('.')?;
    Some((
        NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?,
        index.parse().ok()?,
    ))
}

impl FileSink {
    /// A sink writing under `config.dir` (created when absent).
    pub fn new(config: FileSinkConfig, clock: SharedClock) -> Result<Self> {
        std::fs::create_dir_all(&config.dir).map_err(|e| AuditError::io(&config.dir, e))?;
        Ok(Self {
            config,
            clock,
            state: Arc::new(Mutex::new(None)),
        })
    }

    /// Every audit file in the directory, oldest first.
    pub fn files(&self) -> Result<Vec<PathBuf>> {
        let mut files: Vec<((NaiveDate, u32), PathBuf)> = std::fs::read_dir(&self.config.dir)
            .map_err(|e| AuditError::io(&self.config.dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((parse_name(e.file_name().to_str()?)?, e.path())))
            .collect();
        files.sort();
        Ok(files.into_iter().map(|(_, p)| p).collect())
    }

    fn write_sync(&self, buf: &[u8], now: DateTime<Utc>) -> Result<()> {
        let today = now.date_naive();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rotate = match &*state {
            None => true,
            Some(f) => f.day != today || f.bytes >= self.config.max_file_bytes,
        };
        if rotate {
            let index = match &*state {
                Some(f) if f.day == today => f.index + 1,
                _ => self.next_index(today)?,
            };
            let path = self.config.dir.join(file_name(today, index));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| AuditError::io(&path, e))?;
            let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
            *state = Some(OpenFile {
                day: today,
                index,
                file,
                bytes,
            });
            drop(state);
            self.prune(today)?;
            state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        }
        let Some(f) = state.as_mut() else {
            return Err(AuditError::NotDurable(
                "audit file sink has no open file".into(),
            ));
        };
        let path = self.config.dir.join(file_name(f.day, f.index));
        f.file
            .write_all(buf)
            .map_err(|e| AuditError::io(&path, e))?;
        f.file.sync_data().map_err(|e| AuditError::io(&path, e))?;
        f.bytes += buf.len() as u64;
        Ok(())
    }

    /// The highest index already used today (so a restart appends after it), or 0.
    fn next_index(&self, day: NaiveDate) -> Result<u32> {
        Ok(self
            .files()?
            .iter()
            .filter_map(|p| parse_name(p.file_name()?.to_str()?))
            .filter(|(d, _)| *d == day)
            .map(|(_, i)| i)
            .max()
            .unwrap_or(0))
    }

    fn prune(&self, today: NaiveDate) -> Result<()> {
        if self.config.retention_days == 0 {
            return Ok(());
        }
        let oldest = today - chrono::Days::new(u64::from(self.config.retention_days));
        for path in self.files()? {
            if let Some((day, _)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(parse_name)
                && day < oldest
            {
                std::fs::remove_file(&path).map_err(|e| AuditError::io(&path, e))?;
                tracing::info!(file = %path.display(), "deleted an audit file past its retention");
            }
        }
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }
}

impl AuditSink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    fn write_batch<'a>(&'a self, events: &'a [AuditEvent]) -> BoxFuture<'a, Result<()>> {
        let buf = json_lines(events);
        let now = self.clock.now();
        let this = self.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || this.write_sync(&buf, now))
                .await
                .map_err(|e| AuditError::NotDurable(format!("file sink task failed: {e}")))?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, NewEvent};
    use watchpost_core::ManualClock;

    #[tokio::test]
    async fn rotates_by_day_and_size_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let start = DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let clock = ManualClock::new(start);
        let sink = FileSink::new(
            FileSinkConfig {
                dir: dir.path().to_owned(),
                max_file_bytes: 1000,
                retention_days: 2,
            },
            Arc::new(clock.clone()),
        )
        .unwrap();
        let batch: Vec<AuditEvent> = (0..3)
            .map(|_| NewEvent::new(Action::Login).into_event(start))
            .collect();
        sink.write_batch(&batch).await.unwrap();
        sink.write_batch(&batch).await.unwrap();
        let names: Vec<String> = sink
            .files()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["audit-2026-03-01.0.jsonl", "audit-2026-03-01.1.jsonl"]
        );
        let text = std::fs::read_to_string(&sink.files().unwrap()[0]).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(serde_json::from_str::<AuditEvent>(text.lines().next().unwrap()).is_ok());

        clock.advance(std::time::Duration::from_secs(5 * 86_400));
        sink.write_batch(&batch[..1]).await.unwrap();
        let names: Vec<String> = sink
            .files()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["audit-2026-03-06.0.jsonl"]);
    }
}
