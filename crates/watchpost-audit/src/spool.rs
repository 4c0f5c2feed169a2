//! The durable spool: append-only, fsynced segment files that hold sealed records while the store is unreachable.
//!
//! Records are JSON lines (`{"e": event}` or `{"c": checkpoint}`) in files named
//! `segment-<20 digits>.jsonl` under the spool directory. Each append is one write and one
//! `fdatasync`, so a record acknowledged from the spool survives a crash. Replay reads the
//! oldest segment first and deletes a segment only once every record in it is in the
//! store; the store's idempotent appends make a replay after a crash harmless. A torn last
//! line (a crash in the middle of a write) is ignored: it was never acknowledged.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::Checkpoint;
use crate::error::{AuditError, Result};
use crate::event::AuditEvent;

/// Segments are closed once they pass this size.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// One spooled record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SpoolRecord {
    /// A sealed event.
    #[serde(rename = "e")]
    Event(Box<AuditEvent>),
    /// A signed checkpoint.
    #[serde(rename = "c")]
    Checkpoint(Checkpoint),
}

/// A batch read for replay; hand it back to [`Spool::commit`] once stored.
#[derive(Debug)]
pub struct ReplayBatch {
    /// The records, in spool order.
    pub records: Vec<SpoolRecord>,
    segment: u64,
    next_offset: u64,
    exhausted: bool,
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segments: BTreeMap<u64, u64>,
    active: Option<(u64, File)>,
    read_offset: u64,
}

fn segment_name(n: u64) -> String {
    format!("segment-{n:020}.jsonl")
}

impl Spool {
    /// Opens (creating) the spool in `dir`, finding segments a previous process left.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| AuditError::io(&dir, e))?;
        let mut segments = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| AuditError::io(&dir, e))? {
            let entry = entry.map_err(|e| AuditError::io(&dir, e))?;
            let name = entry.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_prefix("segment-"))
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let len = entry
                .metadata()
                .map_err(|e| AuditError::io(entry.path(), e))?
                .len();
            segments.insert(n, len);
        }
        Ok(Self {
            dir,
            max_bytes,
            segments,
            active: None,
            read_offset: 0,
        })
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes held on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }

    /// The size cap.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Whether nothing waits for replay.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Appends `records` with one write and one fsync; refuses when over the cap.
    pub fn append(&mut self, records: &[SpoolRecord]) -> Result<()> {
        let mut buf = Vec::with_capacity(records.len() * 512);
        for r in records {
            serde_json::to_writer(&mut buf, r).map_err(|e| AuditError::Corrupt(e.to_string()))?;
            buf.push(b'\n');
        }
        let used = self.bytes();
        if used + buf.len() as u64 > self.max_bytes {
            return Err(AuditError::SpoolFull {
                dir: self.dir.clone(),
                bytes: used,
                cap: self.max_bytes,
            });
        }
        let roll = match &self.active {
            None => true,
            Some((n, _)) => self.segments.get(n).copied().unwrap_or(0) >= SEGMENT_BYTES,
        };
        if roll {
            let n = self.segments.keys().next_back().map_or(1, |n| n + 1);
            let path = self.dir.join(segment_name(n));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| AuditError::io(&path, e))?;
            // Make the new file's directory entry durable too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            self.segments.insert(n, 0);
            self.active = Some((n, file));
        }
        let Some((n, file)) = &mut self.active else {
            return Err(AuditError::NotDurable("no active spool segment".into()));
        };
        let path = self.dir.join(segment_name(*n));
        file.write_all(&buf).map_err(|e| AuditError::io(&path, e))?;
        file.sync_data().map_err(|e| AuditError::io(&path, e))?;
        *self.segments.entry(*n).or_insert(0) += buf.len() as u64;
        Ok(())
    }

    /// Reads up to `max` records from the oldest segment (closing it first when it is the active one).
    pub fn read_batch(&mut self, max: usize) -> Result<Option<ReplayBatch>> {
        let Some((&n, _)) = self.segments.iter().next() else {
            return Ok(None);
        };
        if self.active.as_ref().is_some_and(|(a, _)| *a == n) {
            self.active = None;
        }
        let path = self.dir.join(segment_name(n));
        let mut file = File::open(&path).map_err(|e| AuditError::io(&path, e))?;
        file.seek(SeekFrom::Start(self.read_offset))
            .map_err(|e| AuditError::io(&path, e))?;
        let mut reader = BufReader::new(file);
        let mut records = Vec::new();
        let mut offset = self.read_offset;
        let mut line = Vec::new();
        let mut exhausted = false;
        while records.len() < max {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| AuditError::io(&path, e))?;
            if read == 0 {
                exhausted = true;
                break;
            }
            if line.last() != Some(&b'\n') {
                tracing::warn!(segment = %path.display(), offset, "ignoring a torn record at the end of an audit spool segment");
                exhausted = true;
                break;
            }
            offset += read as u64;
            match serde_json::from_slice::<SpoolRecord>(&line) {
                Ok(r) => records.push(r),
                Err(e) => {
                    tracing::error!(segment = %path.display(), offset, error = %e, "skipping an unreadable audit spool record");
                }
            }
        }
        if !exhausted {
            // Peek: a segment whose last record we just read is exhausted too.
            exhausted = reader.fill_buf().map(|b| b.is_empty()).unwrap_or(false);
        }
        Ok(Some(ReplayBatch {
            records,
            segment: n,
            next_offset: offset,
            exhausted,
        }))
    }

    /// Marks a replayed batch as stored; deletes its segment when it is done.
    pub fn commit(&mut self, batch: &ReplayBatch) -> Result<()> {
        if batch.exhausted {
            let path = self.dir.join(segment_name(batch.segment));
            std::fs::remove_file(&path).map_err(|e| AuditError::io(&path, e))?;
            self.segments.remove(&batch.segment);
            self.read_offset = 0;
        } else {
            self.read_offset = batch.next_offset;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, NewEvent};

    fn ev(i: i64) -> SpoolRecord {
        let mut e = NewEvent::new(Action::Create).into_event(chrono::Utc::now());
        e.seq = i;
        SpoolRecord::Event(Box::new(e))
    }

    #[test]
    fn append_replay_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[ev(1), ev(2)]).unwrap();
        s.append(&[ev(3)]).unwrap();
        drop(s);
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(!s.is_empty());
        let b = s.read_batch(2).unwrap().unwrap();
        let seqs: Vec<i64> = b
            .records
            .iter()
            .map(|r| match r {
                SpoolRecord::Event(e) => e.seq,
                SpoolRecord::Checkpoint(_) => -1,
            })
            .collect();
        assert_eq!(seqs, [1, 2]);
        s.commit(&b).unwrap();
        let b = s.read_batch(10).unwrap().unwrap();
        assert_eq!(b.records.len(), 1);
        s.commit(&b).unwrap();
        assert!(s.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn cap_refuses_and_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        s.append(&[ev(1)]).unwrap();
        let used = s.bytes();
        drop(s);
        let mut s = Spool::open(dir.path(), used + 10).unwrap();
        assert!(matches!(
            s.append(&[ev(2), ev(3)]),
            Err(AuditError::SpoolFull { .. })
        ));
        drop(s);
        let seg = dir.path().join(segment_name(1));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(b"{\"e\":{\"id")
            .unwrap();
        let mut s = Spool::open(dir.path(), 1 << 20).unwrap();
        let b = s.read_batch(10).unwrap().unwrap();
        assert_eq!(b.records.len(), 1);
        assert!(b.exhausted);
    }
}
