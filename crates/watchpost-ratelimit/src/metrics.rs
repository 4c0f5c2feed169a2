//! The limiter's Prometheus metrics, registered into a registry handed in.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `watchpost_ratelimit_decisions_total` | counter | `policy` (configured names), `decision` (`allowed`, `denied`, `shadow_denied`, `fail_open`, `fail_closed`) |
//! | `watchpost_ratelimit_keys` | gauge | none: entries in the local store (keys × policies), read at scrape time |
//! | `watchpost_ratelimit_store_errors_total` | counter | none: store failures and timeouts (each gives a degraded decision) |

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::local::LocalStore;

/// The `decision` label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecisionLabel {
    Allowed,
    Denied,
    ShadowDenied,
    FailOpen,
    FailClosed,
}

impl DecisionLabel {
    pub(crate) const ALL: [DecisionLabel; 5] = [
        DecisionLabel::Allowed,
        DecisionLabel::Denied,
        DecisionLabel::ShadowDenied,
        DecisionLabel::FailOpen,
        DecisionLabel::FailClosed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DecisionLabel::Allowed => "allowed",
            DecisionLabel::Denied => "denied",
            DecisionLabel::ShadowDenied => "shadow_denied",
            DecisionLabel::FailOpen => "fail_open",
            DecisionLabel::FailClosed => "fail_closed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: String,
    decision: String,
}

/// The metric handles; cheap to clone, counted whether or not they were registered.
#[derive(Debug, Clone, Default)]
pub(crate) struct Metrics {
    decisions: Family<DecisionLabels, Counter>,
    pub(crate) store_errors: Counter,
}

impl Metrics {
    /// A counter for repeated use on the hot path (no label lookup per request).
    pub(crate) fn decision_counter(&self, policy: &str, decision: DecisionLabel) -> Counter {
        self.decisions
            .get_or_create(&DecisionLabels {
                policy: policy.to_owned(),
                decision: decision.as_str().to_owned(),
            })
            .clone()
    }

    pub(crate) fn register(&self, registry: &mut Registry, local: Option<Arc<LocalStore>>) {
        registry.register(
            "watchpost_ratelimit_decisions",
            "Rate-limit decisions by policy and outcome",
            self.decisions.clone(),
        );
        registry.register(
            "watchpost_ratelimit_store_errors",
            "Rate-limit store failures and timeouts (each one a degraded decision)",
            self.store_errors.clone(),
        );
        if let Some(local) = local {
            registry.register_collector(Box::new(KeysCollector { local }));
        }
    }
}

/// Reads the local store's size at scrape time, so requests never touch a shared gauge.
#[derive(Debug)]
struct KeysCollector {
    local: Arc<LocalStore>,
}

impl Collector for KeysCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let len = i64::try_from(self.local.len()).unwrap_or(i64::MAX);
        let metric = encoder.encode_descriptor(
            "watchpost_ratelimit_keys",
            "Entries (keys x policies) held by the local rate-limit store",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(len).encode(metric)
    }
}
