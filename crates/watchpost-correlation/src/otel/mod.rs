//! OpenTelemetry: configuration from the `OTEL_*` variables, and span export through a bounded queue.

mod config;
mod export;

pub use config::{OtelConfig, OtlpProtocol, Propagators, SamplerConfig, TracesExporter};
pub use export::Telemetry;
