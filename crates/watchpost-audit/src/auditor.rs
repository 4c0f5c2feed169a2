//! [`Auditor`]: the recording handle, and the one writer task per process behind it.
//!
//! Callers prepare events (redaction, bounds) on their own task and hand them to a bounded
//! queue. The writer task seals each event into its hash chain as it arrives and writes
//! batches as a pipeline: while one batch is being made durable (one binary `COPY` and one
//! commit on PostgreSQL, on a task of its own), the events arriving meanwhile are sealed into
//! the next batch (up to `max_batch`), which is written as soon as the first is acknowledged.
//! An idle writer writes a lone event at once (group commit without a timer), so a blocking
//! request waits for at most the write in flight and its own. When the store fails or
//! times out, the batch goes to the fsynced spool instead and is acknowledged from there;
//! while anything is spooled, new batches are spooled too, and the writer replays the spool
//! in order (the store skips ids it already holds) until it is empty. Checkpoints sign the
//! last durable event, every `checkpoint_every` events and every `checkpoint_interval`, idle or not.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use watchpost_core::{SharedClock, SystemClock};

use crate::chain::ChainHead;
use crate::checkpoint::{Checkpoint, CheckpointSigner};
use crate::error::{AuditError, Result};
use crate::event::{AuditEvent, NewEvent};
use crate::metrics::AuditMetrics;
use crate::redact::{MAX_EVENT_BYTES, MAX_PAYLOAD_BYTES, Redactor};
use crate::sink::AuditSink;
use crate::spool::{Spool, SpoolRecord};
use crate::store::AuditStore;

/// Settings of an [`Auditor`]; plain fields so a server can map environment variables onto them.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Prefix of this writer's stream name; the stream is `<prefix>-<start time>-<random>`, new per start.
    pub stream_prefix: String,
    /// Where the spool (`audit-spool/`) and a generated signing key (`audit-signing.key`) live;
    /// `None` disables the spool (events fail when the store does).
    pub data_dir: Option<PathBuf>,
    /// Events that may wait for the writer.
    pub queue_capacity: usize,
    /// Most events per durable batch.
    pub max_batch: usize,
    /// How long an idle writer waits for more events before writing a partial batch. While a
    /// write is in flight the next batch gathers by itself, so the default, zero, writes at once.
    pub linger: Duration,
    /// A store write slower than this is treated as a failure (the batch is spooled).
    pub write_timeout: Duration,
    /// Spool size cap in bytes.
    pub spool_max_bytes: u64,
    /// How often replay of the spool is attempted while the store is failing.
    pub retry_interval: Duration,
    /// Sign a checkpoint after this many events.
    pub checkpoint_every: u64,
    /// Sign a checkpoint at least this often, also when idle.
    pub checkpoint_interval: Duration,
    /// Ed25519 seed, 64 hex characters; when `None`, read or generated at `<data_dir>/audit-signing.key`
    /// (or a throwaway key without a data dir).
    pub signing_key_hex: Option<String>,
    /// HMAC key for redacted fields; when `None`, the signing seed is used.
    pub redaction_key: Option<Vec<u8>>,
    /// Field-name words that mark secrets.
    pub secret_fields: Vec<String>,
    /// Payloads over this size are truncated.
    pub max_payload_bytes: usize,
    /// Events over this size are refused.
    pub max_event_bytes: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            stream_prefix: "watchpost".into(),
            data_dir: None,
            queue_capacity: 10_000,
            max_batch: 1000,
            linger: Duration::ZERO,
            write_timeout: Duration::from_secs(5),
            spool_max_bytes: 1024 * 1024 * 1024,
            retry_interval: Duration::from_secs(1),
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(60),
            signing_key_hex: None,
            redaction_key: None,
            secret_fields: crate::redact::DEFAULT_SECRET_FIELDS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            max_event_bytes: MAX_EVENT_BYTES,
        }
    }
}

impl AuditConfig {
    /// The checkpoint signer this configuration names: `signing_key_hex`, else the key file
    /// `<data_dir>/audit-signing.key` (generated when absent), else a throwaway key.
    /// A verifier (the `audit verify` command) uses its public key as the trusted key.
    pub fn load_signer(&self) -> Result<CheckpointSigner> {
        match (&self.signing_key_hex, &self.data_dir) {
            (Some(hex), _) => CheckpointSigner::from_hex(hex),
            (None, Some(dir)) => CheckpointSigner::load_or_generate(&dir.join("audit-signing.key")),
            (None, None) => Ok(CheckpointSigner::generate()),
        }
    }
}

type Ack = oneshot::Sender<Result<()>>;

/// How often the writer runs [`AuditStore::maintain`] (also once at start).
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(6 * 3600);

enum Msg {
    Event(Box<AuditEvent>, Option<Ack>),
    Flush(oneshot::Sender<Result<()>>),
    Checkpoint(oneshot::Sender<Result<Checkpoint>>),
    Replay(oneshot::Sender<bool>),
    Shutdown(oneshot::Sender<()>),
}

struct Shared {
    tx: mpsc::Sender<Msg>,
    redactor: Redactor,
    clock: SharedClock,
    store: Arc<dyn AuditStore>,
    metrics: AuditMetrics,
    stream: String,
    public_key: String,
    max_event_bytes: usize,
}

/// The recording handle; cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("stream", &self.shared.stream)
            .field("store", &self.shared.store.backend())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Auditor`].
#[derive(Debug)]
pub struct AuditorBuilder {
    store: Arc<dyn AuditStore>,
    config: AuditConfig,
    clock: SharedClock,
    sinks: Vec<Arc<dyn AuditSink>>,
    metrics: AuditMetrics,
}

impl AuditorBuilder {
    /// Sets the configuration.
    #[must_use]
    pub fn config(mut self, config: AuditConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets the clock (timestamps only; timers use tokio time).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Adds an extra sink that receives a copy of every sealed batch.
    #[must_use]
    pub fn sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Starts the writer task on the current tokio runtime.
    pub fn start(self) -> Result<Auditor> {
        let c = &self.config;
        if c.queue_capacity == 0 || c.max_batch == 0 || c.checkpoint_every == 0 {
            return Err(AuditError::Config(
                "queue_capacity, max_batch and checkpoint_every must be at least 1".into(),
            ));
        }
        let signer = match (&c.signing_key_hex, &c.data_dir) {
            (Some(hex), _) => CheckpointSigner::from_hex(hex)?,
            (None, Some(dir)) => {
                CheckpointSigner::load_or_generate(&dir.join("audit-signing.key"))?
            }
            (None, None) => CheckpointSigner::generate(),
        };
        let redaction_key = c
            .redaction_key
            .clone()
            .unwrap_or_else(|| signer.public_key_hex().as_bytes().to_vec());
        let mut redactor =
            Redactor::with_fields(redaction_key, c.secret_fields.iter().map(String::as_str));
        redactor.max_payload_bytes = c.max_payload_bytes;
        let spool = match &c.data_dir {
            Some(dir) => Some(Spool::open(dir.join("audit-spool"), c.spool_max_bytes)?),
            None => None,
        };
        let now = self.clock.now();
        let stream = format!(
            "{}-{}-{}",
            c.stream_prefix,
            now.format("%Y%m%dT%H%M%SZ"),
            hex::encode(rand::random::<[u8; 4]>())
        );
        let (tx, rx) = mpsc::channel(c.queue_capacity);
        let shared = Arc::new(Shared {
            tx,
            redactor,
            clock: self.clock.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            stream: stream.clone(),
            public_key: signer.public_key_hex().to_owned(),
            max_event_bytes: c.max_event_bytes,
        });
        if let Some(s) = &spool {
            self.metrics.spool_bytes.set(s.bytes() as i64);
        }
        let writer = Writer {
            rx,
            store: self.store,
            sinks: self.sinks,
            spool: spool.map(|s| Arc::new(std::sync::Mutex::new(s))),
            spool_pending: false,
            head: ChainHead::genesis(stream),
            durable_seq: 0,
            durable_hash: crate::event::GENESIS_HASH.to_owned(),
            last_checkpoint: None,
            since_checkpoint: 0,
            signer,
            clock: self.clock,
            metrics: self.metrics,
            config: self.config,
            last_recorded: DateTime::<Utc>::MIN_UTC,
        };
        tokio::spawn(writer.run());
        Ok(Auditor { shared })
    }
}

impl Auditor {
    /// A builder over `store`.
    pub fn builder(store: Arc<dyn AuditStore>) -> AuditorBuilder {
        AuditorBuilder {
            store,
            config: AuditConfig::default(),
            clock: SystemClock::shared(),
            sinks: Vec::new(),
            metrics: AuditMetrics::default(),
        }
    }

    /// The store queries and verification read.
    pub fn store(&self) -> &Arc<dyn AuditStore> {
        &self.shared.store
    }

    /// This writer's stream name.
    pub fn stream(&self) -> &str {
        &self.shared.stream
    }

    /// The checkpoint signer's public key (hex); give it to verifiers.
    pub fn public_key_hex(&self) -> &str {
        &self.shared.public_key
    }

    /// The metrics (shared with the writer).
    pub fn metrics(&self) -> &AuditMetrics {
        &self.shared.metrics
    }

    /// Registers this crate's metrics into `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.shared.metrics.register(registry);
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.shared.clock
    }

    /// Redacts and bounds an event; refuses one that is too large.
    pub fn prepare(&self, event: NewEvent) -> Result<AuditEvent> {
        let mut e = event.into_event(self.shared.clock.now());
        if let Some(p) = &mut e.payload {
            self.shared.redactor.apply(p);
        }
        let size = crate::redact::json_len(&e);
        if size > self.shared.max_event_bytes {
            self.shared.metrics.failed.inc();
            return Err(AuditError::EventTooLarge {
                size,
                limit: self.shared.max_event_bytes,
            });
        }
        Ok(e)
    }

    /// Records an event and waits until it is durable (in the store or the spool); returns its id.
    pub async fn record(&self, event: NewEvent) -> Result<Uuid> {
        let e = self.prepare(event)?;
        let id = e.id;
        let (ack, done) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Event(Box::new(e), Some(ack)))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        done.await.map_err(|_| AuditError::WriterStopped)??;
        Ok(id)
    }

    /// Queues an event without waiting for durability; waits only when the queue is full.
    pub async fn record_async(&self, event: NewEvent) -> Result<Uuid> {
        let e = self.prepare(event)?;
        let id = e.id;
        match self.shared.tx.try_send(Msg::Event(Box::new(e), None)) {
            Ok(()) => Ok(id),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                self.shared
                    .tx
                    .send(msg)
                    .await
                    .map_err(|_| AuditError::WriterStopped)?;
                Ok(id)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::WriterStopped),
        }
    }

    /// Queues an event from synchronous code (hooks); when the queue is full a task waits for room.
    pub fn record_detached(&self, event: NewEvent) -> Result<Uuid> {
        let e = self.prepare(event)?;
        let id = e.id;
        match self.shared.tx.try_send(Msg::Event(Box::new(e), None)) {
            Ok(()) => Ok(id),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                let tx = self.shared.tx.clone();
                tokio::spawn(async move {
                    if tx.send(msg).await.is_err() {
                        tracing::error!("audit writer stopped; a detached audit event was lost");
                    }
                });
                Ok(id)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::WriterStopped),
        }
    }

    /// Waits until every event queued before this call is durable.
    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Flush(tx))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        rx.await.map_err(|_| AuditError::WriterStopped)?
    }

    /// Signs a checkpoint now (after everything queued before this call).
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Checkpoint(tx))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        rx.await.map_err(|_| AuditError::WriterStopped)?
    }

    /// Tries to replay the spool into the store now; `true` when the spool is empty afterwards.
    pub async fn replay_spool(&self) -> Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Replay(tx))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        rx.await.map_err(|_| AuditError::WriterStopped)
    }

    /// Drains the queue, signs a final checkpoint, tries one last replay, and stops the writer.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.tx.send(Msg::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Where a batch became durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    Store,
    Spool,
}

/// Events sealed into the chain, in order, not yet durable.
struct Sealed {
    events: Vec<AuditEvent>,
    acks: Vec<Option<Ack>>,
    /// The chain head before the first of them, restored when nothing takes them.
    before: ChainHead,
}

/// A batch a task of its own is writing to the store.
struct InFlight {
    events: Arc<Vec<AuditEvent>>,
    acks: Vec<Option<Ack>>,
    before: ChainHead,
    started: tokio::time::Instant,
    task: tokio::task::JoinHandle<Result<()>>,
}

/// The writer's pipeline: at most one batch in flight to the store, and the next batch,
/// sealed as its events arrive, waiting for it. The store writes in chain order, one at a
/// time, so a batch is never durable before the one it follows.
#[derive(Default)]
struct Pipeline {
    in_flight: Option<InFlight>,
    next: Option<Sealed>,
}

impl Pipeline {
    fn next_len(&self) -> usize {
        self.next.as_ref().map_or(0, |n| n.events.len())
    }
}

/// Resolves when the in-flight write ends; never while nothing is in flight.
async fn landed(
    in_flight: &mut Option<InFlight>,
) -> std::result::Result<Result<()>, tokio::task::JoinError> {
    match in_flight {
        Some(f) => (&mut f.task).await,
        None => std::future::pending().await,
    }
}

struct Writer {
    rx: mpsc::Receiver<Msg>,
    store: Arc<dyn AuditStore>,
    sinks: Vec<Arc<dyn AuditSink>>,
    spool: Option<Arc<std::sync::Mutex<Spool>>>,
    spool_pending: bool,
    /// Where sealing has reached (events sealed, maybe not yet durable).
    head: ChainHead,
    /// The last event known durable (in the store or the spool): what checkpoints sign.
    durable_seq: i64,
    durable_hash: String,
    last_checkpoint: Option<Checkpoint>,
    since_checkpoint: u64,
    signer: CheckpointSigner,
    clock: SharedClock,
    metrics: AuditMetrics,
    config: AuditConfig,
    last_recorded: DateTime<Utc>,
}

impl Writer {
    async fn run(mut self) {
        self.spool_pending = self.spool_len().await > 0;
        if self.spool_pending {
            tracing::info!("audit spool holds records from an earlier run; replaying");
            self.replay().await;
        }
        let mut checkpoint_tick = tokio::time::interval(self.config.checkpoint_interval);
        checkpoint_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checkpoint_tick.tick().await;
        let mut maintenance_tick = tokio::time::interval(MAINTENANCE_INTERVAL);
        maintenance_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retry_tick = tokio::time::interval(self.config.retry_interval);
        retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut p = Pipeline::default();
        loop {
            let room = p.next_len() < self.config.max_batch;
            tokio::select! {
                biased;
                joined = landed(&mut p.in_flight) => {
                    let done = self.land(&mut p, joined).await;
                    self.launch(&mut p).await;
                    if let Some(events) = done {
                        self.after_durable(&events).await;
                    }
                }
                msg = self.rx.recv(), if room => {
                    let Some(msg) = msg else {
                        self.drain(&mut p).await;
                        self.finish().await;
                        return;
                    };
                    let control = match msg {
                        Msg::Event(e, ack) => {
                            self.seal_into(&mut p, *e, ack);
                            self.gather(&mut p).await
                        }
                        other => Some(other),
                    };
                    self.launch(&mut p).await;
                    let Some(control) = control else { continue };
                    // Control messages see everything queued before them durable.
                    self.drain(&mut p).await;
                    match control {
                        Msg::Flush(reply) => { let _ = reply.send(Ok(())); }
                        Msg::Checkpoint(reply) => { let _ = reply.send(self.checkpoint().await); }
                        Msg::Replay(reply) => {
                            self.replay().await;
                            let _ = reply.send(!self.spool_pending);
                        }
                        Msg::Shutdown(reply) => {
                            self.rx.close();
                            while let Ok(msg) = self.rx.try_recv() {
                                if let Msg::Event(e, ack) = msg {
                                    if p.next_len() >= self.config.max_batch {
                                        self.drain(&mut p).await;
                                    }
                                    self.seal_into(&mut p, *e, ack);
                                }
                            }
                            self.drain(&mut p).await;
                            self.finish().await;
                            let _ = reply.send(());
                            return;
                        }
                        Msg::Event(..) => {}
                    }
                }
                _ = checkpoint_tick.tick() => {
                    // Signs what is durable so far; a batch in flight is covered by the next one.
                    if let Err(e) = self.checkpoint().await {
                        tracing::error!(error = %e, "cannot write the periodic audit checkpoint");
                    }
                }
                _ = retry_tick.tick(), if self.spool_pending => {
                    self.drain(&mut p).await;
                    self.replay().await;
                }
                _ = maintenance_tick.tick() => {
                    let now = self.clock.now();
                    if let Err(e) = self.store_call(self.store.maintain(now)).await {
                        tracing::warn!(error = %e, "audit store maintenance failed (creating partitions ahead needs CREATE rights)");
                    }
                }
            }
        }
    }

    /// Seals `event` onto the chain at the end of the next batch.
    fn seal_into(&mut self, p: &mut Pipeline, mut event: AuditEvent, ack: Option<Ack>) {
        event.recorded_at = self.now();
        let head = &mut self.head;
        let max = self.config.max_batch;
        let next = p.next.get_or_insert_with(|| Sealed {
            events: Vec::with_capacity(max.min(1024)),
            acks: Vec::with_capacity(max.min(1024)),
            before: head.clone(),
        });
        head.seal(&mut event);
        next.events.push(event);
        next.acks.push(ack);
    }

    /// Seals every event already waiting into the next batch, until it is full or a control
    /// message comes (returned). Only an idle writer lingers for more (`linger`): while a
    /// write is in flight, the next batch gathers by itself.
    async fn gather(&mut self, p: &mut Pipeline) -> Option<Msg> {
        let deadline = tokio::time::Instant::now() + self.config.linger;
        loop {
            if p.next_len() >= self.config.max_batch {
                return None;
            }
            let msg = match self.rx.try_recv() {
                Ok(m) => m,
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if self.config.linger.is_zero() || p.in_flight.is_some() {
                        return None;
                    }
                    match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some(m)) => m,
                        Ok(None) | Err(_) => return None,
                    }
                }
            };
            match msg {
                Msg::Event(e, ack) => self.seal_into(p, *e, ack),
                other => return Some(other),
            }
        }
    }

    /// Starts writing the next batch when nothing is in flight: to the store on a task of its
    /// own, or, while the spool holds records, to the spool (in place, keeping the order).
    async fn launch(&mut self, p: &mut Pipeline) {
        if p.in_flight.is_some() {
            return;
        }
        let Some(batch) = p.next.take() else {
            return;
        };
        let started = tokio::time::Instant::now();
        let events = Arc::new(batch.events);
        if self.spool_pending {
            let result = self.spool_events(&events).await.map(|()| Durable::Spool);
            let done = self.settle(p, events, batch.acks, batch.before, started, result);
            if let Some(events) = done {
                self.after_durable(&events).await;
            }
            return;
        }
        let (store, timeout, batch_events) = (
            self.store.clone(),
            self.config.write_timeout,
            events.clone(),
        );
        let task = tokio::spawn(async move {
            match tokio::time::timeout(timeout, store.append(&batch_events)).await {
                Ok(r) => r,
                Err(_) => Err(AuditError::Timeout {
                    backend: store.backend(),
                    millis: timeout.as_millis() as u64,
                }),
            }
        });
        p.in_flight = Some(InFlight {
            events,
            acks: batch.acks,
            before: batch.before,
            started,
            task,
        });
    }

    /// Takes the result of the in-flight write; a failed batch goes to the spool.
    /// Returns the batch when it is durable.
    async fn land(
        &mut self,
        p: &mut Pipeline,
        joined: std::result::Result<Result<()>, tokio::task::JoinError>,
    ) -> Option<Arc<Vec<AuditEvent>>> {
        let f = p.in_flight.take()?;
        let stored = joined.unwrap_or_else(|e| {
            Err(AuditError::store(
                self.store.backend(),
                format!("the write task failed: {e}"),
            ))
        });
        let result = match stored {
            Ok(()) => Ok(Durable::Store),
            Err(e) if self.spool.is_some() => {
                tracing::warn!(error = %e, "audit store unavailable; spooling to disk");
                self.spool_events(&f.events).await.map(|()| Durable::Spool)
            }
            Err(e) => Err(e),
        };
        self.settle(p, f.events, f.acks, f.before, f.started, result)
    }

    /// Acknowledges a written batch; when nothing took it, gives its sequence numbers back
    /// (re-sealing the batch behind it) so the chain has no gap.
    fn settle(
        &mut self,
        p: &mut Pipeline,
        events: Arc<Vec<AuditEvent>>,
        acks: Vec<Option<Ack>>,
        before: ChainHead,
        started: tokio::time::Instant,
        result: Result<Durable>,
    ) -> Option<Arc<Vec<AuditEvent>>> {
        let n = events.len() as u64;
        self.metrics
            .write_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.batch_size.observe(n as f64);
        match result {
            Ok(durable) => {
                self.metrics.recorded.inc_by(n);
                if durable == Durable::Spool {
                    self.metrics.spooled.inc_by(n);
                }
                if let Some(last) = events.last() {
                    self.durable_seq = last.seq;
                    self.durable_hash.clone_from(&last.hash);
                }
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(Ok(()));
                }
                Some(events)
            }
            Err(e) => {
                self.head = before.clone();
                if let Some(next) = p.next.as_mut() {
                    next.before = before;
                    for e in &mut next.events {
                        self.head.seal(e);
                    }
                }
                self.metrics.failed.inc_by(n);
                tracing::error!(error = %e, events = n, "audit events could not be made durable");
                let msg = e.to_string();
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(Err(AuditError::NotDurable(msg.clone())));
                }
                None
            }
        }
    }

    /// After a batch is durable (and the next one started): the extra sinks, then a checkpoint when due.
    async fn after_durable(&mut self, events: &[AuditEvent]) {
        for sink in &self.sinks {
            if let Err(e) = sink.write_batch(events).await {
                self.metrics.sink_errors.inc();
                tracing::error!(sink = sink.name(), error = %e, "audit sink write failed");
            }
        }
        self.since_checkpoint += events.len() as u64;
        if self.since_checkpoint >= self.config.checkpoint_every
            && let Err(e) = self.checkpoint().await
        {
            tracing::error!(error = %e, "cannot write an audit checkpoint");
        }
    }

    /// Writes everything sealed so far and waits until it is durable (or refused).
    async fn drain(&mut self, p: &mut Pipeline) {
        loop {
            if p.in_flight.is_some() {
                let joined = landed(&mut p.in_flight).await;
                let done = self.land(p, joined).await;
                self.launch(p).await;
                if let Some(events) = done {
                    self.after_durable(&events).await;
                }
            } else if p.next.is_some() {
                self.launch(p).await;
            } else {
                return;
            }
        }
    }

    fn now(&mut self) -> DateTime<Utc> {
        // recordedAt never goes backwards within a stream, whatever the wall clock does.
        let now = crate::event::micros(self.clock.now()).max(self.last_recorded);
        self.last_recorded = now;
        now
    }

    async fn spool_events(&mut self, events: &[AuditEvent]) -> Result<()> {
        let records: Vec<SpoolRecord> = events
            .iter()
            .map(|e| SpoolRecord::Event(Box::new(e.clone())))
            .collect();
        self.spool_append(records).await
    }

    async fn store_call<T>(&self, fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.config.write_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(AuditError::Timeout {
                backend: self.store.backend(),
                millis: self.config.write_timeout.as_millis() as u64,
            }),
        }
    }

    async fn spool_append(&mut self, records: Vec<SpoolRecord>) -> Result<()> {
        let Some(spool) = self.spool.clone() else {
            return Err(AuditError::NotDurable(
                "the store failed and no spool is configured (set a data dir)".into(),
            ));
        };
        let result = tokio::task::spawn_blocking(move || {
            let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
            let r = s.append(&records);
            (r, s.bytes(), s.max_bytes())
        })
        .await
        .map_err(|e| AuditError::NotDurable(format!("spool task failed: {e}")))?;
        let (r, bytes, cap) = result;
        self.metrics.spool_bytes.set(bytes as i64);
        let alarm = r.is_err() || bytes.saturating_mul(5) > cap.saturating_mul(4);
        self.metrics.spool_alarm.set(i64::from(alarm));
        if r.is_ok() {
            self.spool_pending = true;
        }
        r
    }

    async fn spool_len(&self) -> u64 {
        match &self.spool {
            Some(s) => s.lock().unwrap_or_else(|e| e.into_inner()).bytes(),
            None => 0,
        }
    }

    /// Moves spooled records into the store, oldest first, until the spool is empty or the store fails.
    async fn replay(&mut self) {
        let Some(spool) = self.spool.clone() else {
            self.spool_pending = false;
            return;
        };
        let max = self.config.max_batch;
        loop {
            let s = spool.clone();
            let read = tokio::task::spawn_blocking(move || {
                s.lock().unwrap_or_else(|e| e.into_inner()).read_batch(max)
            })
            .await;
            let batch = match read {
                Ok(Ok(Some(b))) => b,
                Ok(Ok(None)) => {
                    self.spool_pending = false;
                    self.metrics.spool_bytes.set(0);
                    self.metrics.spool_alarm.set(0);
                    tracing::info!("audit spool replayed completely");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the audit spool");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit spool task failed");
                    return;
                }
            };
            let mut events = Vec::new();
            let mut ok = true;
            for r in &batch.records {
                match r {
                    SpoolRecord::Event(e) => events.push((**e).clone()),
                    SpoolRecord::Checkpoint(cp) => {
                        // Keep order: events before a checkpoint are stored before it.
                        if !events.is_empty() {
                            ok = self.store_call(self.store.append(&events)).await.is_ok();
                            events.clear();
                        }
                        ok = ok
                            && self
                                .store_call(self.store.append_checkpoint(cp))
                                .await
                                .is_ok();
                    }
                }
                if !ok {
                    break;
                }
            }
            if ok && !events.is_empty() {
                ok = self.store_call(self.store.append(&events)).await.is_ok();
            }
            if !ok {
                tracing::debug!("audit store still unavailable; spool replay will retry");
                return;
            }
            let s = spool.clone();
            let committed = tokio::task::spawn_blocking(move || {
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.commit(&batch).map(|()| s.bytes())
            })
            .await;
            match committed {
                Ok(Ok(bytes)) => {
                    self.metrics.spool_bytes.set(bytes as i64);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot advance the audit spool");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit spool task failed");
                    return;
                }
            }
        }
    }

    async fn checkpoint(&mut self) -> Result<Checkpoint> {
        let now = self.now();
        let cp = self.signer.sign_next(
            &self.head.stream,
            self.last_checkpoint.as_ref(),
            self.durable_seq,
            &self.durable_hash,
            now,
        );
        let stored = if self.spool_pending {
            Err(AuditError::NotDurable("spool pending".into()))
        } else {
            self.store_call(self.store.append_checkpoint(&cp)).await
        };
        if stored.is_err() {
            self.spool_append(vec![SpoolRecord::Checkpoint(cp.clone())])
                .await?;
        }
        self.last_checkpoint = Some(cp.clone());
        self.since_checkpoint = 0;
        Ok(cp)
    }

    async fn finish(&mut self) {
        if self.durable_seq > self.last_checkpoint.as_ref().map_or(0, |c| c.to_seq)
            && let Err(e) = self.checkpoint().await
        {
            tracing::error!(error = %e, "cannot write the final audit checkpoint");
        }
        if self.spool_pending {
            self.replay().await;
        }
    }
}
