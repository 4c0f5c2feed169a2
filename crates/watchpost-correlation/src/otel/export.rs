//! [`Telemetry`]: the tracer provider, and a bounded export queue that never slows a request.
//!
//! Finished sampled spans go into a bounded channel with `try_send`; a background task
//! batches them and calls the OTLP exporter with a timeout. When the queue is full (the
//! collector is slow, stalled or down) a span is dropped and counted, never waited for;
//! spans in a batch the collector refused are counted as dropped too.
//! [`Telemetry::shutdown`] flushes what is queued within a deadline.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter, SpanProcessor, Tracer};
use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};

use super::config::{OtelConfig, Propagators};
use crate::error::TelemetryError;

/// Why a span was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DropReason {
    QueueFull,
    ExportFailed,
}

impl EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            DropReason::QueueFull => "queue_full",
            DropReason::ExportFailed => "export_failed",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DropLabel {
    reason: DropReason,
}

#[derive(Debug, Clone, Default)]
struct ExportCounters {
    dropped: Family<DropLabel, Counter>,
    exported: Counter,
}

enum Control {
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug)]
struct QueueProcessor {
    spans: mpsc::Sender<SpanData>,
    counters: ExportCounters,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.spans.try_send(span).is_err() {
            self.counters
                .dropped
                .get_or_create(&DropLabel {
                    reason: DropReason::QueueFull,
                })
                .inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        // Flushing is asynchronous: see `Telemetry::flush`.
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

struct Worker<E> {
    exporter: E,
    spans: mpsc::Receiver<SpanData>,
    control: mpsc::Receiver<Control>,
    counters: ExportCounters,
    batch_size: usize,
    delay: Duration,
    timeout: Duration,
    /// When the last failure was logged; failures are logged at most every 30 s.
    last_warning: Option<tokio::time::Instant>,
}

impl<E: SpanExporter + 'static> Worker<E> {
    async fn run(mut self) {
        let mut batch: Vec<SpanData> = Vec::with_capacity(self.batch_size);
        let mut tick = tokio::time::interval(self.delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                span = self.spans.recv() => match span {
                    Some(span) => {
                        batch.push(span);
                        if batch.len() >= self.batch_size {
                            self.export(&mut batch).await;
                        }
                    }
                    None => {
                        self.export(&mut batch).await;
                        return;
                    }
                },
                _ = tick.tick() => self.export(&mut batch).await,
                control = self.control.recv() => {
                    let (reply, stop) = match control {
                        Some(Control::Flush(reply)) => (Some(reply), false),
                        Some(Control::Shutdown(reply)) => (Some(reply), true),
                        None => (None, true),
                    };
                    while let Ok(span) = self.spans.try_recv() {
                        batch.push(span);
                        if batch.len() >= self.batch_size {
                            self.export(&mut batch).await;
                        }
                    }
                    self.export(&mut batch).await;
                    if stop {
                        let _ = self.exporter.shutdown_with_timeout(Duration::from_millis(100));
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                    if stop {
                        return;
                    }
                }
            }
        }
    }

    async fn export(&mut self, batch: &mut Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        let spans = std::mem::take(batch);
        let n = spans.len() as u64;
        match tokio::time::timeout(self.timeout, self.exporter.export(spans)).await {
            Ok(Ok(())) => {
                self.counters.exported.inc_by(n);
            }
            Ok(Err(error)) => {
                self.fail(n, &error.to_string());
            }
            Err(_) => {
                self.fail(n, &format!("no answer within {:?}", self.timeout));
            }
        }
    }

    fn fail(&mut self, n: u64, why: &str) {
        self.counters
            .dropped
            .get_or_create(&DropLabel {
                reason: DropReason::ExportFailed,
            })
            .inc_by(n);
        let now = tokio::time::Instant::now();
        if self
            .last_warning
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(30))
        {
            return;
        }
        self.last_warning = Some(now);
        // The queue task is not inside any request, so this line carries no request ids.
        tracing::warn!(target: "watchpost_correlation::otlp", spans = n, error = why, "OTLP export failed; spans dropped (further failures in the next 30 s are only counted in watchpost_otlp_spans_dropped_total)");
    }
}

struct Inner {
    config: OtelConfig,
    provider: Option<SdkTracerProvider>,
    tracer: Option<Tracer>,
    control: Option<mpsc::Sender<Control>>,
    counters: ExportCounters,
}

/// The running OpenTelemetry pipeline (or its absence); clones share it.
#[derive(Clone)]
pub struct Telemetry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("export", &self.inner.tracer.is_some())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Starts export as `config` says (nothing when export is off). Must run inside a tokio runtime
    /// when export is on.
    pub fn start(config: &OtelConfig) -> Result<Self, TelemetryError> {
        if !config.export_enabled() {
            return Ok(Self::off(config));
        }
        #[cfg(feature = "otlp")]
        {
            let exporter = build_exporter(config)?;
            Self::with_exporter(config, exporter)
        }
        #[cfg(not(feature = "otlp"))]
        {
            Err(TelemetryError::ExportNotCompiled)
        }
    }

    /// No export: the layer still assigns trace and span ids for logs.
    pub fn off(config: &OtelConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                provider: None,
                tracer: None,
                control: None,
                counters: ExportCounters::default(),
            }),
        }
    }

    /// Export through `exporter` (any `SpanExporter`, for example an in-memory one in tests),
    /// with `config`'s sampler, resource and queue bounds. Must run inside a tokio runtime.
    pub fn with_exporter<E: SpanExporter + 'static>(
        config: &OtelConfig,
        mut exporter: E,
    ) -> Result<Self, TelemetryError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| TelemetryError::NoRuntime)?;
        let resource = Resource::builder_empty()
            .with_attributes(
                config
                    .resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .with_service_name(config.service_name.clone())
            .build();
        exporter.set_resource(&resource);
        let counters = ExportCounters::default();
        let (span_tx, span_rx) = mpsc::channel(config.max_queue_size.max(1));
        let (control_tx, control_rx) = mpsc::channel(4);
        let worker = Worker {
            exporter,
            spans: span_rx,
            control: control_rx,
            counters: counters.clone(),
            batch_size: config.max_export_batch_size.max(1),
            delay: config.schedule_delay,
            timeout: config.timeout,
            last_warning: None,
        };
        runtime.spawn(worker.run());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(QueueProcessor {
                spans: span_tx,
                counters: counters.clone(),
            })
            .with_sampler(config.sampler.to_sdk())
            .with_resource(resource)
            .build();
        let tracer =
            opentelemetry::trace::TracerProvider::tracer(&provider, "watchpost-correlation");
        Ok(Self {
            inner: Arc::new(Inner {
                config: config.clone(),
                provider: Some(provider),
                tracer: Some(tracer),
                control: Some(control_tx),
                counters,
            }),
        })
    }

    /// The tracer for `tracing_opentelemetry::layer().with_tracer(..)`, when export is on.
    pub fn tracer(&self) -> Option<Tracer> {
        self.inner.tracer.clone()
    }

    /// The configuration this pipeline runs with.
    pub fn config(&self) -> &OtelConfig {
        &self.inner.config
    }

    /// The propagators to hand to the correlation layer's configuration.
    pub fn propagators(&self) -> Propagators {
        self.inner.config.propagators
    }

    /// Spans dropped so far (queue full or export failed).
    pub fn spans_dropped(&self) -> u64 {
        [DropReason::QueueFull, DropReason::ExportFailed]
            .into_iter()
            .map(|reason| {
                self.inner
                    .counters
                    .dropped
                    .get_or_create(&DropLabel { reason })
                    .get()
            })
            .sum()
    }

    /// Spans the collector accepted so far.
    pub fn spans_exported(&self) -> u64 {
        self.inner.counters.exported.get()
    }

    /// Registers `watchpost_otlp_spans_dropped_total{reason}` and `watchpost_otlp_spans_exported_total`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "watchpost_otlp_spans_dropped",
            "Finished spans not delivered to the collector: queue full or export failed",
            self.inner.counters.dropped.clone(),
        );
        registry.register(
            "watchpost_otlp_spans_exported",
            "Finished spans the collector accepted",
            self.inner.counters.exported.clone(),
        );
    }

    /// Exports everything queued now, waiting at most `deadline`.
    pub async fn flush(&self, deadline: Duration) -> Result<(), TelemetryError> {
        self.control(deadline, Control::Flush).await
    }

    /// Flushes within `deadline` and stops the export task; later spans are dropped and counted.
    /// Also writes the log lines [`crate::init`]'s output still holds ([`crate::flush_logs`]).
    pub async fn shutdown(&self, deadline: Duration) -> Result<(), TelemetryError> {
        let result = self.control(deadline, Control::Shutdown).await;
        crate::logging::flush_logs();
        if let Some(provider) = &self.inner.provider {
            // Our processor's shutdown does not block, so this is safe on the runtime.
            let _ = provider.shutdown();
        }
        result
    }

    async fn control(
        &self,
        deadline: Duration,
        make: fn(oneshot::Sender<()>) -> Control,
    ) -> Result<(), TelemetryError> {
        let Some(control) = &self.inner.control else {
            return Ok(());
        };
        let (reply, done) = oneshot::channel();
        let work = async {
            if control.send(make(reply)).await.is_ok() {
                let _ = done.await;
            }
        };
        tokio::time::timeout(deadline, work)
            .await
            .map_err(|_| TelemetryError::FlushTimeout(deadline))
    }
}

#[cfg(feature = "otlp")]
fn build_exporter(config: &OtelConfig) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};

    use super::config::OtlpProtocol;

    let endpoint = config.endpoint.clone().unwrap_or_default();
    let fail = |protocol: &'static str, message: String| TelemetryError::Exporter {
        protocol,
        endpoint: endpoint.clone(),
        message,
    };
    match config.protocol {
        OtlpProtocol::Grpc => {
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &config.headers {
                let key =
                    tonic::metadata::MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|e| fail("grpc", format!("header name {k:?}: {e}")))?;
                let value = v
                    .parse()
                    .map_err(|e| fail("grpc", format!("header {k:?} value: {e}")))?;
                metadata.insert(key, value);
            }
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(config.timeout)
                .with_metadata(metadata)
                .build()
                .map_err(|e| fail("grpc", e.to_string()))
        }
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(endpoint.clone())
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(config.timeout)
            .with_headers(config.headers.iter().cloned().collect())
            .build()
            .map_err(|e| fail("http/protobuf", e.to_string())),
    }
}
