//! [`MetricsRegistry`]: Watchpost's own metric families, the typed application-metrics API, and
//! the prometheus-client registries of other crates, all rendered by one scrape.
//!
//! # Example
//!
//! ```
//! use watchpost_metrics::{Format, MetricsRegistry};
//!
//! let registry = MetricsRegistry::new(2_000);
//! let orders = registry.counter("shop_orders", "Orders placed.", ["channel"]).unwrap();
//! orders.inc(["web"]);
//! let queue = registry.gauge("shop_queue_depth", "Jobs waiting.", []).unwrap();
//! queue.set([], 7);
//! let text = registry.render(Format::Prometheus);
//! assert!(text.contains("shop_orders_total{channel=\"web\"} 1\n"));
//! assert!(text.contains("shop_queue_depth 7\n"));
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use prometheus_client::registry::Registry;
use watchpost_core::{SpanId, TraceId};

use crate::encode::{self, Format};
use crate::error::MetricsError;
use crate::family::{
    Buckets, Collect, CounterValue, Family, GaugeValue, HistogramValue, Kind, Series,
};

/// The family counting label sets folded into overflow series.
pub const OVERFLOW_METRIC: &str = "watchpost_metrics_overflow";

/// Where every metric of the process is kept, and how it is rendered.
///
/// Clones share the same metrics.
#[derive(Clone, Debug)]
pub struct MetricsRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    default_max_series: usize,
    limits: RwLock<HashMap<String, usize>>,
    names: Mutex<HashSet<String>>,
    collectors: RwLock<Vec<Arc<dyn Collect>>>,
    foreign: RwLock<Vec<Arc<Registry>>>,
}

impl MetricsRegistry {
    /// An empty registry whose families hold at most `default_max_series` label sets each.
    pub fn new(default_max_series: usize) -> Self {
        let mut names = HashSet::new();
        names.insert(OVERFLOW_METRIC.to_owned());
        Self {
            inner: Arc::new(Inner {
                default_max_series: default_max_series.max(1),
                limits: RwLock::new(HashMap::new()),
                names: Mutex::new(names),
                collectors: RwLock::new(Vec::new()),
                foreign: RwLock::new(Vec::new()),
            }),
        }
    }

    /// Sets the series limit of the family `name` (base name, without `_total`), for families
    /// registered after this call.
    pub fn set_series_limit(&self, name: &str, max_series: usize) {
        self.inner
            .limits
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(base_name(name).to_owned(), max_series.max(1));
    }

    /// Adds a prometheus-client registry (filled by another crate) to every scrape.
    ///
    /// Its family names must not collide with Watchpost's own; prometheus-client encodes it.
    pub fn add_registry(&self, registry: Registry) {
        self.inner
            .foreign
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(registry));
    }

    /// A counter family; `name` may end in `_total` or not (the samples always do).
    pub fn counter<const N: usize>(
        &self,
        name: &str,
        help: &str,
        labels: [&str; N],
    ) -> Result<CounterFamily<N>, MetricsError> {
        let name = base_name(name);
        let family = self.family(name, help, Kind::Counter, &labels, CounterValue::default)?;
        Ok(CounterFamily { family })
    }

    /// A gauge family (integer values).
    pub fn gauge<const N: usize>(
        &self,
        name: &str,
        help: &str,
        labels: [&str; N],
    ) -> Result<GaugeFamily<N>, MetricsError> {
        let family = self.family(name, help, Kind::Gauge, &labels, GaugeValue::default)?;
        Ok(GaugeFamily { family })
    }

    /// A histogram family with the given bucket upper bounds (finite, strictly increasing; `+Inf` is implied).
    pub fn histogram<const N: usize>(
        &self,
        name: &str,
        help: &str,
        labels: [&str; N],
        buckets: &[f64],
    ) -> Result<HistogramFamily<N>, MetricsError> {
        check_buckets(name, buckets)?;
        let buckets = Buckets::new(buckets);
        let family = self.family(name, help, Kind::Histogram, &labels, move || {
            HistogramValue::new(buckets.clone())
        })?;
        Ok(HistogramFamily { family })
    }

    pub(crate) fn family<V: crate::family::SeriesValue>(
        &self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &[&str],
        make: impl Fn() -> V + Send + Sync + 'static,
    ) -> Result<Arc<Family<V>>, MetricsError> {
        if !encode::is_valid_metric_name(name) {
            return Err(MetricsError::InvalidMetricName {
                name: name.to_owned(),
            });
        }
        let mut seen = HashSet::new();
        for label in labels {
            if !encode::is_valid_label_name(label) || !seen.insert(*label) {
                return Err(MetricsError::InvalidLabelName {
                    metric: name.to_owned(),
                    label: (*label).to_owned(),
                });
            }
        }
        let max_series = self
            .inner
            .limits
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(self.inner.default_max_series);
        let family = Arc::new(Family::new(name, help, kind, labels, max_series, make));
        self.claim_name(name)?;
        self.push_collector(family.clone());
        Ok(family)
    }

    /// Reserves `name`; `jobs` and `jobs_total` are one name, since a counter `jobs` writes `jobs_total`.
    pub(crate) fn claim_name(&self, name: &str) -> Result<(), MetricsError> {
        let mut names = self.inner.names.lock().unwrap_or_else(|e| e.into_inner());
        if !names.insert(base_name(name).to_owned()) {
            return Err(MetricsError::DuplicateMetric {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    pub(crate) fn push_collector(&self, collector: Arc<dyn Collect>) {
        self.inner
            .collectors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(collector);
    }

    /// Every metric family Watchpost itself writes, as (sample family name, label names), sorted by name.
    ///
    /// Families of registries added with [`add_registry`](Self::add_registry) are not listed.
    pub fn describe(&self) -> Vec<(String, Vec<String>)> {
        let mut all: Vec<_> = self
            .inner
            .collectors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .flat_map(|c| c.describe())
            .collect();
        all.push((
            format!("{OVERFLOW_METRIC}_total"),
            vec!["metric".to_owned()],
        ));
        all.sort();
        all
    }

    /// Renders every metric in `format` (OpenMetrics output ends in `# EOF`).
    pub fn render(&self, format: Format) -> String {
        let mut out = String::with_capacity(64 * 1024);
        self.render_into(&mut out, format);
        out
    }

    /// Like [`render`](Self::render), into a buffer the caller may reuse.
    pub fn render_into(&self, out: &mut String, format: Format) {
        let collectors = self
            .inner
            .collectors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut folds = Vec::new();
        for c in &collectors {
            c.collect(out, format);
            if let Some((name, n)) = c.overflow() {
                folds.push((name.to_owned(), n));
            }
        }
        write_overflow(out, format, &folds);
        let foreign = self
            .inner
            .foreign
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for registry in &foreign {
            match format {
                Format::OpenMetrics => {
                    // Writing to a String cannot fail.
                    let _ = prometheus_client::encoding::text::encode_registry(out, registry);
                }
                Format::Prometheus => {
                    let mut om = String::new();
                    let _ = prometheus_client::encoding::text::encode_registry(&mut om, registry);
                    encode::openmetrics_to_prometheus(&om, out);
                }
            }
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
    }

    /// Label sets folded into overflow series so far, for the family `name` (base name).
    pub fn overflow_folds(&self, name: &str) -> u64 {
        let name = base_name(name);
        self.inner
            .collectors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter_map(|c| c.overflow())
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, folds)| folds)
    }
}

fn write_overflow(out: &mut String, format: Format, folds: &[(String, u64)]) {
    let help = "Label sets folded into a family's otel_metric_overflow=\"true\" series because the family reached its series limit.";
    let family = match format {
        Format::Prometheus => format!("{OVERFLOW_METRIC}_total"),
        Format::OpenMetrics => OVERFLOW_METRIC.to_owned(),
    };
    out.push_str("# HELP ");
    out.push_str(&family);
    out.push(' ');
    out.push_str(&encode::escape_help(help, format));
    out.push_str("\n# TYPE ");
    out.push_str(&family);
    out.push_str(" counter\n");
    for (name, n) in folds {
        out.push_str(OVERFLOW_METRIC);
        out.push_str("_total{metric=\"");
        encode::push_label_value(out, name);
        out.push_str("\"} ");
        encode::push_u64(out, *n);
        out.push('\n');
    }
}

fn base_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

fn check_buckets(name: &str, buckets: &[f64]) -> Result<(), MetricsError> {
    let reason = if buckets.is_empty() {
        Some("no bucket bounds given")
    } else if buckets.iter().any(|b| !b.is_finite()) {
        Some("bounds must be finite (+Inf is implied)")
    } else if buckets.windows(2).any(|w| w[0] >= w[1]) {
        Some("bounds must be strictly increasing")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(MetricsError::InvalidBuckets {
            metric: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A counter family with `N` labels.
#[derive(Debug, Clone)]
pub struct CounterFamily<const N: usize> {
    family: Arc<Family<CounterValue>>,
}

impl<const N: usize> CounterFamily<N> {
    pub(crate) fn family(&self) -> &Family<CounterValue> {
        &self.family
    }

    /// Adds one to the series `labels`.
    pub fn inc(&self, labels: [&str; N]) {
        self.family.with(&labels, |c| c.inc_by(1));
    }

    /// Adds `v` to the series `labels`.
    pub fn inc_by(&self, labels: [&str; N], v: u64) {
        self.family.with(&labels, |c| c.inc_by(v));
    }

    /// The value of the series `labels` (of the overflow series if `labels` was folded).
    pub fn get(&self, labels: [&str; N]) -> u64 {
        self.family.with(&labels, CounterValue::get)
    }

    /// A handle on the series `labels`, for hot paths that always use the same labels.
    pub fn with(&self, labels: [&str; N]) -> Counter {
        Counter {
            series: self.family.series(&labels),
        }
    }
}

/// One counter series.
#[derive(Debug, Clone)]
pub struct Counter {
    series: Arc<Series<CounterValue>>,
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.series.value.inc_by(1);
    }
    /// Adds `v`.
    pub fn inc_by(&self, v: u64) {
        self.series.value.inc_by(v);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.series.value.get()
    }
}

/// A gauge family with `N` labels.
#[derive(Debug, Clone)]
pub struct GaugeFamily<const N: usize> {
    family: Arc<Family<GaugeValue>>,
}

impl<const N: usize> GaugeFamily<N> {
    /// Sets the series `labels` to `v`.
    pub fn set(&self, labels: [&str; N], v: i64) {
        self.family.with(&labels, |g| g.set(v));
    }
    /// Adds `v` (may be negative) to the series `labels`.
    pub fn add(&self, labels: [&str; N], v: i64) {
        self.family.with(&labels, |g| g.add(v));
    }
    /// The value of the series `labels`.
    pub fn get(&self, labels: [&str; N]) -> i64 {
        self.family.with(&labels, GaugeValue::get)
    }
    /// A handle on the series `labels`.
    pub fn with(&self, labels: [&str; N]) -> Gauge {
        Gauge {
            series: self.family.series(&labels),
        }
    }
}

/// One gauge series.
#[derive(Debug, Clone)]
pub struct Gauge {
    series: Arc<Series<GaugeValue>>,
}

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.series.value.set(v);
    }
    /// Adds `v` (may be negative).
    pub fn add(&self, v: i64) {
        self.series.value.add(v);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.series.value.add(1);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.series.value.add(-1);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.series.value.get()
    }
}

/// A histogram family with `N` labels.
#[derive(Debug, Clone)]
pub struct HistogramFamily<const N: usize> {
    family: Arc<Family<HistogramValue>>,
}

impl<const N: usize> HistogramFamily<N> {
    /// Records `v` in the series `labels`.
    pub fn observe(&self, labels: [&str; N], v: f64) {
        self.family.with(&labels, |h| h.observe(v, None));
    }

    /// Records `v` with the trace it belongs to (an OpenMetrics exemplar).
    pub fn observe_with_exemplar(
        &self,
        labels: [&str; N],
        v: f64,
        trace_id: TraceId,
        span_id: SpanId,
    ) {
        self.family
            .with(&labels, |h| h.observe(v, Some((trace_id, span_id))));
    }

    /// (count, sum) of the series `labels`.
    pub fn get(&self, labels: [&str; N]) -> (u64, f64) {
        self.family.with(&labels, |h| (h.count(), h.sum()))
    }

    /// A handle on the series `labels`.
    pub fn with(&self, labels: [&str; N]) -> Histogram {
        Histogram {
            series: self.family.series(&labels),
        }
    }

    /// How many series the family holds (the overflow series included).
    pub fn series_count(&self) -> usize {
        self.family.series_count()
    }
}

/// One histogram series.
#[derive(Debug, Clone)]
pub struct Histogram {
    series: Arc<Series<HistogramValue>>,
}

impl Histogram {
    /// Records `v`.
    pub fn observe(&self, v: f64) {
        self.series.value.observe(v, None);
    }
    /// (count, sum) so far.
    pub fn get(&self) -> (u64, f64) {
        (self.series.value.count(), self.series.value.sum())
    }
}

macro_rules! series_count {
    ($($t:ident),*) => {$(
        impl<const N: usize> $t<N> {
            /// How many series the family holds (the overflow series included).
            pub fn len(&self) -> usize {
                self.family.series_count()
            }
            /// Whether the family holds no series yet.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
            /// The most label sets kept before folding into the overflow series.
            pub fn max_series(&self) -> usize {
                self.family.max_series()
            }
        }
    )*};
}
series_count!(CounterFamily, GaugeFamily, HistogramFamily);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_labels_buckets_and_duplicates_are_refused() {
        let r = MetricsRegistry::new(10);
        assert!(matches!(
            r.counter("1bad", "", []),
            Err(MetricsError::InvalidMetricName { .. })
        ));
        assert!(matches!(
            r.counter("ok", "", ["a", "a"]),
            Err(MetricsError::InvalidLabelName { .. })
        ));
        assert!(matches!(
            r.histogram("h", "", [], &[1.0, 0.5]),
            Err(MetricsError::InvalidBuckets { .. })
        ));
        r.counter("jobs_total", "", []).unwrap();
        assert!(matches!(
            r.gauge("jobs", "", []),
            Err(MetricsError::DuplicateMetric { .. })
        ));
        assert!(
            r.counter("watchpost_metrics_overflow_total", "", [])
                .is_err()
        );
    }

    #[test]
    fn per_family_limits_apply() {
        let r = MetricsRegistry::new(100);
        r.set_series_limit("tiny_total", 2);
        let c = r.counter("tiny", "", ["k"]).unwrap();
        for k in ["a", "b", "c", "d"] {
            c.inc([k]);
        }
        assert_eq!(c.max_series(), 2);
        assert_eq!(c.len(), 3);
        assert_eq!(r.overflow_folds("tiny"), 2);
        let text = r.render(Format::Prometheus);
        assert!(
            text.contains("watchpost_metrics_overflow_total{metric=\"tiny\"} 2\n"),
            "{text}"
        );
    }
}
