//! [`LocalStore`]: the in-process store, a sharded open-addressing table with a hard key cap
//! and eviction that never stops the world.
//!
//! Layout: 64 shards, each a `Mutex` around a power-of-two array of 24-byte slots
//! (`hash: u64`, `window: u32`, `cur: u32`, `prev: u32`, `expires_s: u32`), probed
//! linearly. A slot is filed under a 64-bit keyed hash of (key, policy id); the key
//! itself is not stored (two keys collide with probability about n²/2⁶⁵: 3·10⁻⁸ at a
//! million keys). All policies of one key live in the same shard, so a request checks
//! and counts every policy under one lock.
//!
//! Eviction is incremental: an entry two windows old is worth nothing (its counts read as
//! zero), so
//! - a lookup that walks past such an entry reuses its slot for a new key;
//! - every eighth operation on a shard also looks at the next eight slots of a sweep
//!   cursor (one slot per operation on average) and removes dead entries there (backward-shift deletion, no tombstones);
//!   a cursor that has looked at every slot once rests until the next second (expiry is
//!   kept in seconds), so a small, busy table does not rescan itself thousands of times a second;
//! - at the cap, a new key evicts the least recently active (then least used) of eight
//!   entries sampled near its home slot.
//!
//! Shards grow by doubling up to the size the cap needs at ¾ load; the largest rehash
//! moves one shard (at the default cap about 12,000 entries, well under a millisecond),
//! never the whole map.

use std::sync::Mutex;

use crate::decision::Decision;
use crate::key::fmix64;
use crate::policy::{MAX_POLICIES_PER_SET, PolicySet};
use crate::window::{WindowCounts, allows};

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
const INITIAL_SLOTS: usize = 8;
/// Every `SWEEP_EVERY`-th operation on a shard sweeps `SWEEP_EVERY` consecutive slots:
/// one slot per operation on average, read as a few adjacent cache lines at once.
const SWEEP_EVERY: u32 = 8;
/// Entries compared when one must go to make room at the cap.
const EVICTION_SAMPLE: usize = 8;

/// The default cap on stored entries (one entry per key and policy).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    hash: u64,
    window: u32,
    cur: u32,
    prev: u32,
    expires_s: u32,
}

#[derive(Debug)]
struct Table {
    slots: Vec<Slot>,
    len: usize,
    sweep: u32,
    ops: u32,
    /// Slots the sweep cursor has still to look at in its current pass over the table.
    pass_left: u32,
    /// The second in which the sweep cursor last completed a pass.
    pass_done_s: Option<u32>,
}

/// Cache-line aligned so two shards never share a line.
#[derive(Debug)]
#[repr(align(64))]
struct Shard(Mutex<Table>);

/// The in-process store: bounded, sharded, swept incrementally.
#[derive(Debug)]
pub struct LocalStore {
    shards: Box<[Shard]>,
    cap_per_shard: usize,
    max_slots: usize,
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_KEYS)
    }
}

impl Table {
    fn new(slots: usize) -> Self {
        Self {
            slots: vec![Slot::default(); slots],
            len: 0,
            sweep: 0,
            ops: 0,
            pass_left: 0,
            pass_done_s: None,
        }
    }

    /// The index of the slot for `hash`, if stored.
    #[inline]
    fn find(&self, hash: u64) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        loop {
            let h = self.slots[i].hash;
            if h == hash {
                return Some(i);
            }
            if h == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The slot for `hash`, inserting it (by reusing a dead slot, growing, or replacing the
    /// least recently active entry at the cap) with `fresh` as its content when absent.
    /// Entries whose hash is in `busy` (this request's other policies) are never replaced.
    fn find_or_insert(
        &mut self,
        fresh: Slot,
        now_s: u32,
        cap: usize,
        max_slots: usize,
        busy: &[u64],
    ) -> usize {
        let hash = fresh.hash;
        loop {
            let mask = self.slots.len() - 1;
            let mut i = hash as usize & mask;
            let mut reuse = None;
            let empty = loop {
                let s = self.slots[i];
                if s.hash == hash {
                    return i;
                }
                if s.hash == 0 {
                    break i;
                }
                if reuse.is_none() && s.expires_s <= now_s && !busy.contains(&s.hash) {
                    reuse = Some(i);
                }
                i = (i + 1) & mask;
            };
            if let Some(r) = reuse {
                self.slots[r] = fresh;
                return r;
            }
            let over_load = (self.len + 1) * 4 > self.slots.len() * 3;
            if self.len < cap && !over_load {
                self.slots[empty] = fresh;
                self.len += 1;
                return empty;
            }
            if self.len < cap && self.slots.len() < max_slots {
                self.grow(now_s);
                continue;
            }
            // At the cap: sample entries near the home slot and drop the least recently active,
            // then the least used (so a heavy user outlives a stream of one-shot keys).
            let mut best: Option<((u32, u32), usize)> = None;
            let mut j = hash as usize & mask;
            let mut sampled = 0;
            for _ in 0..self.slots.len() {
                let s = self.slots[j];
                if s.hash != 0 && !busy.contains(&s.hash) {
                    let score = (s.expires_s, s.cur.saturating_add(s.prev));
                    if best.is_none_or(|(b, _)| score < b) {
                        best = Some((score, j));
                    }
                    sampled += 1;
                    if sampled == EVICTION_SAMPLE {
                        break;
                    }
                }
                j = (j + 1) & mask;
            }
            match best {
                Some((_, v)) => self.remove_at(v),
                None => {
                    // Only this request's own entries are stored: exceed the cap by one.
                    self.slots[empty] = fresh;
                    self.len += 1;
                    return empty;
                }
            }
        }
    }

    fn grow(&mut self, now_s: u32) {
        let doubled = vec![Slot::default(); self.slots.len() * 2];
        let old = std::mem::replace(&mut self.slots, doubled);
        let mask = self.slots.len() - 1;
        self.len = 0;
        for s in old
            .into_iter()
            .filter(|s| s.hash != 0 && s.expires_s > now_s)
        {
            let mut i = s.hash as usize & mask;
            while self.slots[i].hash != 0 {
                i = (i + 1) & mask;
            }
            self.slots[i] = s;
            self.len += 1;
        }
    }

    /// Backward-shift deletion: keeps every probe path intact without tombstones.
    fn remove_at(&mut self, i: usize) {
        let mask = self.slots.len() - 1;
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s.hash == 0 {
                break;
            }
            let home = s.hash as usize & mask;
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = Slot::default();
        self.len -= 1;
    }

    #[inline]
    fn sweep(&mut self, now_s: u32) {
        self.ops = self.ops.wrapping_add(1);
        if !self.ops.is_multiple_of(SWEEP_EVERY) {
            return;
        }
        if self.pass_left == 0 {
            // Expiry is kept in whole seconds, so a second pass within the second that
            // completed one could only find what that pass left: rest until the clock moves on.
            if self.pass_done_s == Some(now_s) {
                return;
            }
            // Slots never exceed the cap's table size, far below 2^32.
            self.pass_left = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        }
        let mask = self.slots.len() - 1;
        for _ in 0..SWEEP_EVERY {
            let i = self.sweep as usize & mask;
            let s = self.slots[i];
            if s.hash != 0 && s.expires_s <= now_s {
                // The deletion may shift a later entry into this slot: look at it again next.
                self.remove_at(i);
                continue;
            }
            self.sweep = self.sweep.wrapping_add(1);
            self.pass_left -= 1;
            if self.pass_left == 0 {
                self.pass_done_s = Some(now_s);
                return;
            }
        }
    }
}

#[inline]
fn slot_hash(key_hash: u64, policy_id: u32) -> u64 {
    let h = fmix64(key_hash ^ (u64::from(policy_id) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    if h == 0 { 1 } else { h }
}

impl LocalStore {
    /// A store holding at most `max_keys` entries (one per key and policy; at least 64).
    pub fn new(max_keys: usize) -> Self {
        let cap_per_shard = max_keys.div_ceil(SHARDS).max(1);
        // Room for the cap at ¾ load.
        let max_slots = (cap_per_shard * 4)
            .div_ceil(3)
            .next_power_of_two()
            .max(INITIAL_SLOTS);
        Self {
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(Table::new(INITIAL_SLOTS))))
                .collect(),
            cap_per_shard,
            max_slots,
        }
    }

    /// The cap on entries.
    pub fn max_keys(&self) -> usize {
        self.cap_per_shard * SHARDS
    }

    /// Entries stored now (live or awaiting the sweep); takes each shard's lock in turn.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).len)
            .sum()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the tables (slot arrays), for memory accounting.
    pub fn table_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.0.lock().unwrap_or_else(|e| e.into_inner()).slots.len()
                    * std::mem::size_of::<Slot>()
            })
            .sum()
    }

    /// Decides a request of `cost` by the key with hash `key_hash` against `set` at `now_ms`,
    /// counting it in every policy when all allow it.
    #[inline]
    pub(crate) fn decide(
        &self,
        key_hash: u64,
        set: &PolicySet,
        cost: u64,
        now_ms: u64,
    ) -> Decision {
        let shard = &self.shards[(key_hash >> (64 - SHARD_BITS)) as usize];
        let mut t = shard.0.lock().unwrap_or_else(|e| e.into_inner());
        let now_s = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let n = set.policies.len().min(MAX_POLICIES_PER_SET);
        let mut hashes = [0u64; MAX_POLICIES_PER_SET];
        let mut idx = [0usize; MAX_POLICIES_PER_SET];
        let mut inserted = false;
        for (p, (pid, policy)) in set.policies.iter().enumerate().take(n) {
            let hash = slot_hash(key_hash, *pid);
            hashes[p] = hash;
            // A warm key: one probe, no insertion bookkeeping.
            if let Some(i) = t.find(hash) {
                idx[p] = i;
                continue;
            }
            inserted = true;
            let (now_window, _) = set.windows[p].split(now_ms, policy.window_ms());
            let fresh = Slot {
                hash,
                window: now_window as u32,
                cur: 0,
                prev: 0,
                expires_s: expires_s(now_window, policy.window_ms()),
            };
            idx[p] = t.find_or_insert(
                fresh,
                now_s,
                self.cap_per_shard,
                self.max_slots,
                &hashes[..p],
            );
        }
        if n > 1 && inserted {
            // A later insert may have moved an earlier entry (growth or deletion): find them again.
            for p in 0..n {
                idx[p] = t.find(hashes[p]).unwrap_or(idx[p]);
            }
        }
        // Under the lock only what must be: read, roll and count. The decision (the caller's
        // copy of every policy's numbers) is assembled after the unlock.
        let mut seen = [(WindowCounts::default(), 0u64, false); MAX_POLICIES_PER_SET];
        let mut allowed = true;
        for (p, (_, policy)) in set.policies.iter().enumerate().take(n) {
            let w = policy.window_ms();
            let (now_window, elapsed) = set.windows[p].split(now_ms, w);
            let slot = &mut t.slots[idx[p]];
            let counts = WindowCounts {
                window: slot.window,
                cur: slot.cur,
                prev: slot.prev,
            }
            .rolled(now_window as u32);
            slot.window = counts.window;
            slot.cur = counts.cur;
            slot.prev = counts.prev;
            slot.expires_s = expires_s(now_window, w);
            let ok = allows(counts, policy.limit(), w, elapsed, cost);
            allowed &= ok;
            seen[p] = (counts, elapsed, ok);
        }
        if allowed {
            let add = u32::try_from(cost).unwrap_or(u32::MAX);
            for &i in idx.iter().take(n) {
                let slot = &mut t.slots[i];
                slot.cur = slot.cur.saturating_add(add);
            }
        }
        t.sweep(now_s);
        drop(t);
        let mut decision = Decision::empty();
        for ((_, policy), &(counts, elapsed, ok)) in set.policies.iter().zip(&seen).take(n) {
            decision.push_raw(
                counts,
                policy.limit(),
                policy.window_ms(),
                elapsed,
                cost,
                ok,
            );
        }
        decision
    }
}

/// The second from which an entry of window `now_window` reads as zero.
#[inline]
fn expires_s(now_window: u64, window_ms: u64) -> u32 {
    u32::try_from(((now_window + 2) * window_ms).div_ceil(1000)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicySet, requests_per};
    use std::time::Duration;

    fn set(limit: u64, secs: u64) -> PolicySet {
        PolicySet::new(vec![(0, requests_per(limit, Duration::from_secs(secs)))]).unwrap()
    }

    #[test]
    fn slot_is_24_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert_eq!(
            std::mem::size_of::<Shard>(),
            64,
            "a shard is one cache line"
        );
    }

    #[test]
    fn cap_is_hard_and_old_entries_go_first() {
        let store = LocalStore::new(64 * 4);
        let s = set(10, 1);
        for k in 0..10_000u64 {
            store.decide(fmix64(k), &s, 1, 0);
            assert!(store.len() <= store.max_keys());
        }
        assert!(
            store.table_bytes() <= SHARDS * 8 * 24,
            "tables never grow past the cap's size"
        );
    }

    #[test]
    fn the_sweep_rests_after_a_pass_until_the_next_second() {
        let mut t = Table::new(64);
        for k in 1..=40u64 {
            let fresh = Slot {
                hash: fmix64(k) | 1,
                window: 0,
                cur: 1,
                prev: 0,
                // Half the entries die at second 5, half live on.
                expires_s: if k % 2 == 0 { 5 } else { 100 },
            };
            t.find_or_insert(fresh, 0, 1_000, 64, &[]);
        }
        assert_eq!(t.len, 40);
        // Second 4: one pass (64 slots, eight slots every eighth operation) finds nothing dead,
        // then the cursor rests.
        for _ in 0..64 {
            t.sweep(4);
        }
        assert_eq!(t.pass_done_s, Some(4));
        let cursor = t.sweep;
        for _ in 0..1_000 {
            t.sweep(4);
        }
        assert_eq!(t.sweep, cursor, "no second pass within the same second");
        assert_eq!(t.len, 40);
        // Second 5: the next pass removes every dead entry, shifted ones included (a removal
        // looks at its slot again, so the pass takes more than 64 operations).
        for _ in 0..1_000 {
            t.sweep(5);
        }
        assert_eq!(t.pass_done_s, Some(5));
        assert_eq!(t.len, 20);
        assert!(t.slots.iter().all(|s| s.hash == 0 || s.expires_s == 100));
    }

    #[test]
    fn dead_entries_are_swept_without_new_keys() {
        let store = LocalStore::new(100_000);
        let s = set(10, 1);
        for k in 0..5_000u64 {
            store.decide(fmix64(k), &s, 1, 0);
        }
        assert_eq!(store.len(), 5_000);
        // Later traffic from 1,024 keys touches every shard; each sweeps one slot per operation on average.
        for k in 0..200_000u64 {
            store.decide(fmix64(k % 1024 + 1_000_000), &s, 1, 10_000);
        }
        assert!(store.len() <= 1024, "dead entries remain: {}", store.len());
    }

    /// The longest stop under one shard lock: the last doubling of a shard at the default
    /// cap (the largest rehash there is), and inserts at the cap (sampled eviction).
    /// Timed as the best of five runs, so that preemption on a busy machine is not counted;
    /// asserted at most 1 ms in optimised builds
    /// (`cargo test --release -p watchpost-ratelimit --lib pause -- --nocapture`).
    #[test]
    fn longest_pause_is_under_a_millisecond() {
        use std::time::{Duration, Instant};
        let store = LocalStore::new(DEFAULT_MAX_KEYS);
        let (cap, max_slots) = (store.cap_per_shard, store.max_slots);
        let mut h = 0u64;
        let mut next_hash = || {
            h += 1;
            slot_hash(fmix64(h), 0)
        };
        let entry = |hash| Slot {
            hash,
            expires_s: 100,
            ..Slot::default()
        };
        let mut grow = Duration::MAX;
        let mut moved = 0;
        for _ in 0..5 {
            let mut t = Table::new(max_slots / 2);
            while (t.len + 2) * 4 <= t.slots.len() * 3 {
                t.find_or_insert(entry(next_hash()), 0, cap, max_slots, &[]);
            }
            moved = t.len;
            let start = Instant::now();
            t.grow(0);
            grow = grow.min(start.elapsed());
            assert_eq!(t.slots.len(), max_slots);
        }
        // At the cap: each insert evicts one of eight sampled entries.
        let mut t = Table::new(max_slots);
        while t.len < cap {
            t.find_or_insert(entry(next_hash()), 0, cap, max_slots, &[]);
        }
        let mut evict = Duration::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..1000 {
                t.find_or_insert(entry(next_hash()), 0, cap, max_slots, &[]);
            }
            evict = evict.min(start.elapsed() / 1000);
        }
        assert_eq!(t.len, cap);
        #[allow(clippy::print_stdout)] // the measured figure is the point of this test
        {
            println!(
                "pause: largest rehash {grow:?} ({moved} entries, {max_slots} slots per shard at a cap of {DEFAULT_MAX_KEYS}); insert at the cap {evict:?} on average"
            );
        }
        if !cfg!(debug_assertions) {
            assert!(grow <= Duration::from_millis(1), "rehash took {grow:?}");
            assert!(evict <= Duration::from_millis(1), "eviction took {evict:?}");
        }
    }

    #[test]
    fn remove_keeps_probe_paths() {
        let mut t = Table::new(8);
        // Three entries with the same home slot 1, then remove the first.
        for hash in [1u64 | 8, 1 | 16, 1 | 24] {
            let fresh = Slot {
                hash,
                expires_s: 100,
                ..Slot::default()
            };
            t.find_or_insert(fresh, 0, 100, 8, &[]);
        }
        t.remove_at(1);
        assert_eq!(t.find(1 | 24), Some(2));
        assert_eq!(t.find(1 | 16), Some(1));
        assert_eq!(t.find(1 | 8), None);
    }
}
