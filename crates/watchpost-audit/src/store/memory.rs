//! [`MemoryStore`]: events and checkpoints in process memory (tests, demos, laptops).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;

use uuid::Uuid;

use super::{AuditStore, EventQuery, Page, StoreFuture, check_limit, page_from};
use crate::checkpoint::Checkpoint;
use crate::event::AuditEvent;

#[derive(Debug, Default)]
struct Inner {
    events: Vec<AuditEvent>,
    by_id: HashMap<Uuid, usize>,
    by_stream: BTreeMap<String, BTreeMap<i64, usize>>,
    checkpoints: BTreeMap<String, BTreeMap<i64, Checkpoint>>,
}

/// An in-memory store; not durable. Clones share nothing: wrap it in an `Arc` to share.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many events are stored.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl AuditStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn is_durable(&self) -> bool {
        false
    }

    fn append<'a>(&'a self, events: &'a [AuditEvent]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut g = self.write();
            for e in events {
                if g.by_id.contains_key(&e.id) {
                    continue;
                }
                let idx = g.events.len();
                g.by_id.insert(e.id, idx);
                g.by_stream
                    .entry(e.stream.clone())
                    .or_default()
                    .insert(e.seq, idx);
                g.events.push(e.clone());
            }
            Ok(())
        })
    }

    fn append_checkpoint<'a>(&'a self, cp: &'a Checkpoint) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.write()
                .checkpoints
                .entry(cp.stream.clone())
                .or_default()
                .entry(cp.number)
                .or_insert_with(|| cp.clone());
            Ok(())
        })
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<AuditEvent>> {
        Box::pin(async move {
            let g = self.read();
            Ok(g.by_id.get(&id).map(|&i| g.events[i].clone()))
        })
    }

    fn query<'a>(&'a self, q: &'a EventQuery) -> StoreFuture<'a, Page> {
        Box::pin(async move {
            let limit = check_limit(q.limit)?;
            let g = self.read();
            let mut rows: Vec<&AuditEvent> = g
                .events
                .iter()
                .filter(|e| q.matches(e) && q.cursor.is_none_or(|c| c.precedes(e)))
                .collect();
            rows.sort_unstable_by_key(|e| std::cmp::Reverse((e.recorded_at, e.id)));
            rows.truncate(limit + 1);
            Ok(page_from(rows.into_iter().cloned().collect(), limit))
        })
    }

    fn stream_events<'a>(
        &'a self,
        stream: &'a str,
        after_seq: i64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<AuditEvent>> {
        Box::pin(async move {
            let g = self.read();
            Ok(g.by_stream
                .get(stream)
                .map(|m| {
                    m.range(after_seq + 1..)
                        .take(limit)
                        .map(|(_, &i)| g.events[i].clone())
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    fn streams(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            let g = self.read();
            let mut s: Vec<String> = g
                .by_stream
                .keys()
                .chain(g.checkpoints.keys())
                .cloned()
                .collect();
            s.sort();
            s.dedup();
            Ok(s)
        })
    }

    fn checkpoints<'a>(&'a self, stream: &'a str) -> StoreFuture<'a, Vec<Checkpoint>> {
        Box::pin(async move {
            Ok(self
                .read()
                .checkpoints
                .get(stream)
                .map(|m| m.values().cloned().collect())
                .unwrap_or_default())
        })
    }

    fn existing_ids<'a>(&'a self, ids: &'a [Uuid]) -> StoreFuture<'a, HashSet<Uuid>> {
        Box::pin(async move {
            let g = self.read();
            Ok(ids
                .iter()
                .filter(|id| g.by_id.contains_key(id))
                .copied()
                .collect())
        })
    }
}
