//! [`TelemetryError`]: what can go wrong configuring or running logging and OTLP export.

/// A configuration or start-up error; the server turns it into one line and exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An environment variable held a value this crate cannot use.
    #[error("invalid {variable}={value:?}: {reason}")]
    InvalidVariable {
        /// The variable's name.
        variable: &'static str,
        /// The value as given.
        value: String,
        /// Why it is refused and what is accepted.
        reason: String,
    },
    /// The OTLP exporter could not be built.
    #[error(
        "cannot build the OTLP {protocol} exporter for {endpoint}: {message}; check OTEL_EXPORTER_OTLP_ENDPOINT and OTEL_EXPORTER_OTLP_PROTOCOL"
    )]
    Exporter {
        /// `grpc` or `http/protobuf`.
        protocol: &'static str,
        /// The endpoint.
        endpoint: String,
        /// What the exporter said.
        message: String,
    },
    /// OTLP export was asked for but this build has no `otlp` feature.
    #[error(
        "OTEL_EXPORTER_OTLP_ENDPOINT is set but watchpost-correlation was built without the `otlp` feature; enable it or unset the variable"
    )]
    ExportNotCompiled,
    /// Export needs a tokio runtime to run its queue.
    #[error("OTLP export must be started inside a tokio runtime (call it from an async main)")]
    NoRuntime,
    /// A global tracing subscriber was already installed.
    #[error(
        "a global tracing subscriber is already installed; call watchpost_correlation::init once, before any other logging setup"
    )]
    SubscriberAlreadySet,
    /// The `RUST_LOG` directives could not be parsed.
    #[error(
        "invalid RUST_LOG={value:?}: {message} (example: RUST_LOG=info,watchpost_correlation::request=warn)"
    )]
    Filter {
        /// The directives as given.
        value: String,
        /// What the parser said.
        message: String,
    },
    /// Flushing spans did not finish before the deadline.
    #[error("OTLP export did not finish flushing within {0:?}; some spans were not delivered")]
    FlushTimeout(std::time::Duration),
}
