//! The metrics this crate counts, registered into a `prometheus_client` registry handed in by the caller.
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `watchpost_correlation_rejected_ids_total` | `header` (`x-request-id`, `x-correlation-id`) | received ids refused by the validator |
//! | `watchpost_errors_total` | `kind` (`panic`, `server_error`) | handler panics and 5xx responses |
//! | `watchpost_otlp_spans_dropped_total` | none | finished spans dropped because the export queue was full |

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Which id header a refused id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdHeader {
    /// `X-Request-ID`.
    RequestId,
    /// `X-Correlation-ID`.
    CorrelationId,
}

/// What kind of error was grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ErrorKind {
    /// A handler panicked.
    Panic,
    /// A response had a 5xx status.
    ServerError,
}

impl ErrorKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Panic => "panic",
            ErrorKind::ServerError => "server_error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct HeaderLabel {
    pub(crate) header: IdHeader,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct KindLabel {
    pub(crate) kind: ErrorKind,
}

/// The layer's counters; clones share them.
#[derive(Debug, Clone, Default)]
pub struct CorrelationMetrics {
    pub(crate) rejected_ids: Family<HeaderLabel, Counter>,
    pub(crate) errors: Family<KindLabel, Counter>,
}

impl CorrelationMetrics {
    /// Registers `watchpost_correlation_rejected_ids_total` and `watchpost_errors_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "watchpost_correlation_rejected_ids",
            "Received X-Request-ID or X-Correlation-ID values refused by the id validator",
            self.rejected_ids.clone(),
        );
        registry.register(
            "watchpost_errors",
            "Handler panics and 5xx responses, by kind",
            self.errors.clone(),
        );
    }

    /// Refused ids counted so far for `header`.
    pub fn rejected_ids(&self, header: IdHeader) -> u64 {
        self.rejected_ids
            .get_or_create(&HeaderLabel { header })
            .get()
    }

    /// Errors counted so far of `kind`.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors.get_or_create(&KindLabel { kind }).get()
    }

    pub(crate) fn reject(&self, header: IdHeader) {
        self.rejected_ids
            .get_or_create(&HeaderLabel { header })
            .inc();
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }
}

impl IdHeader {
    /// The label value (the header name, lowercase).
    pub fn as_str(self) -> &'static str {
        match self {
            IdHeader::RequestId => "x-request-id",
            IdHeader::CorrelationId => "x-correlation-id",
        }
    }
}

impl EncodeLabelValue for IdHeader {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for ErrorKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}
