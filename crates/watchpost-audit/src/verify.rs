//! Verification of the trail: every stream's hash chain, sequence gaps, and its signed checkpoints.
//!
//! [`verify`] is what `watchpost audit verify` and `GET /audit/verify` run. It reads each
//! stream in sequence order, page by page (memory stays constant), recomputes every hash,
//! checks every link, and reports per stream the first broken link, every gap, and every
//! missing or bad checkpoint. A stream whose beginning was removed by retention is accepted
//! when a retention event (itself chained) declares the last removed sequence number and
//! hash; see [`RETENTION_RESOURCE`].

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Serialize;

use crate::chain::compute_hash;
use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::event::GENESIS_HASH;
use crate::store::{AuditStore, EventQuery, MAX_PAGE};

/// The `resourceType` of retention events (action `system`); their payload is
/// `{"partition": name, "streams": {stream: {"lastSeq": n, "lastHash": hex}}}`.
pub const RETENTION_RESOURCE: &str = "audit_partition";

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Public keys (hex) whose checkpoints are trusted; empty trusts any well-formed signature
    /// but still checks it (use this only when the signer's key is not at hand).
    pub trusted_keys: Vec<String>,
    /// Report a missing checkpoint when more events than this follow the last one (0: do not check the tail).
    pub max_uncheckpointed: i64,
}

/// A link that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokenLink {
    /// The sequence number of the event that fails.
    pub seq: i64,
    /// Its id.
    pub event_id: String,
    /// Why.
    pub reason: String,
}

/// Missing sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    /// First missing number.
    pub from_seq: i64,
    /// Last missing number.
    pub to_seq: i64,
}

/// A checkpoint problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointProblem {
    /// The checkpoint number concerned (for a missing one, the number expected).
    pub number: i64,
    /// `missing`, `bad_signature`, `untrusted_key`, `broken_chain`, `head_mismatch`, `range`.
    pub kind: String,
    /// Details for people.
    pub detail: String,
}

/// One stream's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamReport {
    /// The stream.
    pub stream: String,
    /// Whether nothing is wrong.
    pub ok: bool,
    /// Events read.
    pub events: u64,
    /// First sequence number present.
    pub first_seq: Option<i64>,
    /// Last sequence number present.
    pub last_seq: Option<i64>,
    /// Sequence numbers before this were removed by a recorded retention.
    pub retained_from: Option<i64>,
    /// The first event whose link or hash fails.
    pub first_broken_link: Option<BrokenLink>,
    /// How many events fail their link or hash.
    pub broken_links: u64,
    /// Missing sequence numbers.
    pub gaps: Vec<Gap>,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Checkpoint problems.
    pub checkpoint_problems: Vec<CheckpointProblem>,
}

/// The whole result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// Whether every stream verified.
    pub ok: bool,
    /// Events read.
    pub events_checked: u64,
    /// Checkpoints read.
    pub checkpoints_checked: u64,
    /// Wall time.
    pub duration_ms: u64,
    /// Per stream.
    pub streams: Vec<StreamReport>,
}

/// Retention declarations: stream -> (last removed seq -> its hash).
async fn retention_marks(store: &dyn AuditStore) -> Result<HashMap<String, BTreeMap<i64, String>>> {
    let mut marks: HashMap<String, BTreeMap<i64, String>> = HashMap::new();
    let mut q = EventQuery {
        action: Some("system".into()),
        resource_type: Some(RETENTION_RESOURCE.into()),
        limit: MAX_PAGE,
        ..EventQuery::default()
    };
    loop {
        let page = store.query(&q).await?;
        for e in &page.items {
            let Some(streams) = e
                .payload
                .as_ref()
                .and_then(|p| p.get("streams"))
                .and_then(|s| s.as_object())
            else {
                continue;
            };
            for (stream, v) in streams {
                if let (Some(seq), Some(hash)) = (
                    v.get("lastSeq").and_then(|s| s.as_i64()),
                    v.get("lastHash").and_then(|h| h.as_str()),
                ) {
                    marks
                        .entry(stream.clone())
                        .or_default()
                        .insert(seq, hash.to_owned());
                }
            }
        }
        match page.next {
            Some(c) => q.cursor = Some(c),
            None => return Ok(marks),
        }
    }
}

/// Verifies every stream in `store`.
pub async fn verify(store: &dyn AuditStore, options: &VerifyOptions) -> Result<VerifyReport> {
    let started = Instant::now();
    let marks = retention_marks(store).await?;
    let mut streams = Vec::new();
    for stream in store.streams().await? {
        let empty = BTreeMap::new();
        streams.push(
            verify_stream(
                store,
                &stream,
                marks.get(&stream).unwrap_or(&empty),
                options,
            )
            .await?,
        );
    }
    Ok(VerifyReport {
        ok: streams.iter().all(|s| s.ok),
        events_checked: streams.iter().map(|s| s.events).sum(),
        checkpoints_checked: streams.iter().map(|s| s.checkpoints).sum(),
        duration_ms: started.elapsed().as_millis() as u64,
        streams,
    })
}

/// Verifies one stream.
pub async fn verify_stream(
    store: &dyn AuditStore,
    stream: &str,
    retention: &BTreeMap<i64, String>,
    options: &VerifyOptions,
) -> Result<StreamReport> {
    let checkpoints = store.checkpoints(stream).await?;
    let mut wanted: HashMap<i64, Option<String>> =
        checkpoints.iter().map(|c| (c.to_seq, None)).collect();
    let mut r = StreamReport {
        stream: stream.to_owned(),
        ok: true,
        events: 0,
        first_seq: None,
        last_seq: None,
        retained_from: None,
        first_broken_link: None,
        broken_links: 0,
        gaps: Vec::new(),
        checkpoints: checkpoints.len() as u64,
        checkpoint_problems: Vec::new(),
    };
    let mut prev: Option<(i64, String)> = None;
    let mut after = 0i64;
    loop {
        let page = store.stream_events(stream, after, 5000).await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            r.events += 1;
            match &prev {
                None => {
                    r.first_seq = Some(e.seq);
                    if e.seq == 1 {
                        if e.prev_hash != GENESIS_HASH {
                            broken(
                                &mut r,
                                e.seq,
                                e.id.to_string(),
                                "the first event does not start from the genesis hash".into(),
                            );
                        }
                    } else if retention.get(&(e.seq - 1)) == Some(&e.prev_hash) {
                        r.retained_from = Some(e.seq);
                    } else {
                        r.gaps.push(Gap {
                            from_seq: 1,
                            to_seq: e.seq - 1,
                        });
                    }
                }
                Some((pseq, phash)) => {
                    if e.seq == pseq + 1 {
                        if &e.prev_hash != phash {
                            broken(
                                &mut r,
                                e.seq,
                                e.id.to_string(),
                                format!("prevHash does not match the hash of event {pseq}"),
                            );
                        }
                    } else if e.seq > pseq + 1 {
                        r.gaps.push(Gap {
                            from_seq: pseq + 1,
                            to_seq: e.seq - 1,
                        });
                    } else {
                        broken(
                            &mut r,
                            e.seq,
                            e.id.to_string(),
                            format!("sequence number {} repeats", e.seq),
                        );
                    }
                }
            }
            let computed = compute_hash(e);
            if computed != e.hash {
                broken(
                    &mut r,
                    e.seq,
                    e.id.to_string(),
                    "the event's content does not match its hash (altered)".into(),
                );
            }
            if let Some(slot) = wanted.get_mut(&e.seq) {
                *slot = Some(e.hash.clone());
            }
            prev = Some((e.seq, e.hash.clone()));
            after = e.seq;
        }
    }
    r.last_seq = prev.as_ref().map(|p| p.0);
    check_checkpoints(&mut r, &checkpoints, &wanted, options);
    r.ok = r.first_broken_link.is_none() && r.gaps.is_empty() && r.checkpoint_problems.is_empty();
    Ok(r)
}

fn broken(r: &mut StreamReport, seq: i64, event_id: String, reason: String) {
    r.broken_links += 1;
    if r.first_broken_link.is_none() {
        r.first_broken_link = Some(BrokenLink {
            seq,
            event_id,
            reason,
        });
    }
}

fn check_checkpoints(
    r: &mut StreamReport,
    checkpoints: &[Checkpoint],
    hashes: &HashMap<i64, Option<String>>,
    options: &VerifyOptions,
) {
    let mut problem = |number: i64, kind: &str, detail: String| {
        r.checkpoint_problems.push(CheckpointProblem {
            number,
            kind: kind.to_owned(),
            detail,
        });
    };
    let mut prev: Option<&Checkpoint> = None;
    for cp in checkpoints {
        let expected = prev.map_or(1, |p| p.number + 1);
        if cp.number != expected {
            problem(
                expected,
                "missing",
                format!("checkpoints {expected} to {} are missing", cp.number - 1),
            );
        }
        if !cp.signature_valid() {
            problem(
                cp.number,
                "bad_signature",
                "the signature does not verify".into(),
            );
        } else if !options.trusted_keys.is_empty()
            && !options
                .trusted_keys
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&cp.public_key))
        {
            problem(
                cp.number,
                "untrusted_key",
                format!("signed by {}, which is not a trusted key", cp.public_key),
            );
        }
        if cp.number == expected {
            let want_sig = prev.map_or("", |p| p.signature.as_str());
            if cp.prev_signature != want_sig {
                problem(
                    cp.number,
                    "broken_chain",
                    "prevSignature does not match the previous checkpoint".into(),
                );
            }
            let want_from = prev.map_or(1, |p| p.to_seq + 1);
            if cp.from_seq != want_from || cp.to_seq < cp.from_seq - 1 {
                problem(
                    cp.number,
                    "range",
                    format!(
                        "covers {}..={} but should start at {want_from}",
                        cp.from_seq, cp.to_seq
                    ),
                );
            }
        }
        let retained_before = r.retained_from.unwrap_or(1);
        if cp.to_seq == 0 {
            if cp.head_hash != GENESIS_HASH {
                problem(
                    cp.number,
                    "head_mismatch",
                    "an empty stream's checkpoint must carry the genesis hash".into(),
                );
            }
        } else if cp.to_seq >= retained_before {
            match hashes.get(&cp.to_seq).cloned().flatten() {
                Some(h) if h == cp.head_hash => {}
                Some(_) => problem(
                    cp.number,
                    "head_mismatch",
                    format!(
                        "event {} does not have the hash this checkpoint signed",
                        cp.to_seq
                    ),
                ),
                None => problem(
                    cp.number,
                    "head_mismatch",
                    format!("event {} that this checkpoint signed is missing", cp.to_seq),
                ),
            }
        }
        prev = Some(cp);
    }
    if options.max_uncheckpointed > 0 {
        let covered = prev.map_or(0, |p| p.to_seq);
        let tail = r.last_seq.unwrap_or(0) - covered;
        if tail > options.max_uncheckpointed {
            problem(
                prev.map_or(1, |p| p.number + 1),
                "missing",
                format!("{tail} events after sequence {covered} are not covered by any checkpoint"),
            );
        }
    }
}
