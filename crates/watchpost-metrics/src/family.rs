//! Metric families with a cardinality cap: the storage behind every Watchpost metric.
//!
//! A family maps the escaped label text of a series (`method="GET",route="/x"`) to its value.
//! Past `max_series` label sets, new label sets are folded into one overflow series labelled
//! `otel_metric_overflow="true"` (the OpenTelemetry SDK's convention), the fold is counted for
//! `watchpost_metrics_overflow_total{metric}`, and a warning is logged once per family. Memory
//! is therefore bounded by `max_series + 1` series per family whatever the label flood.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use watchpost_core::{SpanId, TraceId};

use crate::encode::{self, Format};

/// The label text of the overflow series.
pub(crate) const OVERFLOW_LABELS: &str = "otel_metric_overflow=\"true\"";

/// The kind of a family, which decides its type line and sample names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A value that a family can hold for each series.
pub(crate) trait SeriesValue: Send + Sync + 'static {
    /// Writes the samples of one series.
    fn write(&self, out: &mut String, name: &str, labels: &str, format: Format);
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub(crate) struct CounterValue(AtomicU64);

impl CounterValue {
    pub(crate) fn inc_by(&self, v: u64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl SeriesValue for CounterValue {
    fn write(&self, out: &mut String, name: &str, labels: &str, _format: Format) {
        write_sample(out, name, "_total", labels, "");
        encode::push_u64(out, self.get());
        out.push('\n');
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub(crate) struct GaugeValue(AtomicI64);

impl GaugeValue {
    pub(crate) fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub(crate) fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl SeriesValue for GaugeValue {
    fn write(&self, out: &mut String, name: &str, labels: &str, _format: Format) {
        write_sample(out, name, "", labels, "");
        encode::push_i64(out, self.get());
        out.push('\n');
    }
}

/// The trace an observation belongs to, shown as an OpenMetrics exemplar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) value: f64,
}

/// The bucket bounds of a histogram, with their `le` text rendered once.
#[derive(Debug)]
pub(crate) struct Buckets {
    bounds: Box<[f64]>,
    le_text: Box<[String]>,
}

impl Buckets {
    /// Bounds must be finite and strictly increasing (checked by the registry).
    pub(crate) fn new(bounds: &[f64]) -> Arc<Self> {
        let le_text = bounds
            .iter()
            .map(|b| {
                let mut s = String::from("le=\"");
                encode::push_f64(&mut s, *b);
                // OpenMetrics wants canonical floats in `le`; `1` is accepted, `1.0` is canonical.
                if b.fract() == 0.0 {
                    s.push_str(".0");
                }
                s.push('"');
                s
            })
            .chain(std::iter::once("le=\"+Inf\"".to_owned()))
            .collect();
        Arc::new(Self {
            bounds: bounds.into(),
            le_text,
        })
    }
}

/// A histogram series: per-bucket counts (not cumulative), sum, count, and one exemplar per bucket.
#[derive(Debug)]
pub(crate) struct HistogramValue {
    buckets: Arc<Buckets>,
    counts: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
    exemplars: Box<[Mutex<Option<Exemplar>>]>,
}

impl HistogramValue {
    pub(crate) fn new(buckets: Arc<Buckets>) -> Self {
        let n = buckets.bounds.len() + 1;
        Self {
            counts: (0..n).map(|_| AtomicU64::new(0)).collect(),
            exemplars: (0..n).map(|_| Mutex::new(None)).collect(),
            buckets,
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub(crate) fn observe(&self, v: f64, exemplar: Option<(TraceId, SpanId)>) {
        let idx = self.buckets.bounds.partition_point(|b| *b < v);
        // No separate count: it is the sum of the buckets, one atomic add fewer per observation.
        self.counts[idx].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
        if let Some((trace_id, span_id)) = exemplar {
            *self.exemplars[idx]
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Exemplar {
                trace_id,
                span_id,
                value: v,
            });
        }
    }

    pub(crate) fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }
}

impl SeriesValue for HistogramValue {
    fn write(&self, out: &mut String, name: &str, labels: &str, format: Format) {
        let mut cumulative = 0u64;
        for (i, le) in self.buckets.le_text.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            write_sample(out, name, "_bucket", labels, le);
            encode::push_u64(out, cumulative);
            if format == Format::OpenMetrics
                && let Some(ex) = *self.exemplars[i].lock().unwrap_or_else(|e| e.into_inner())
            {
                // 63 characters of exemplar labels: within OpenMetrics' 128-character limit.
                out.push_str(" # {trace_id=\"");
                out.push_str(&ex.trace_id.to_string());
                out.push_str("\",span_id=\"");
                out.push_str(&ex.span_id.to_string());
                out.push_str("\"} ");
                encode::push_f64(out, ex.value);
            }
            out.push('\n');
        }
        write_sample(out, name, "_sum", labels, "");
        encode::push_f64(out, self.sum());
        out.push('\n');
        write_sample(out, name, "_count", labels, "");
        // The count is the +Inf bucket, so that a scrape racing an observation stays consistent.
        encode::push_u64(out, cumulative);
        out.push('\n');
    }
}

/// Writes `name<suffix>{labels,extra} ` (braces only when there are labels).
fn write_sample(out: &mut String, name: &str, suffix: &str, labels: &str, extra: &str) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || !extra.is_empty() {
        out.push('{');
        out.push_str(labels);
        if !labels.is_empty() && !extra.is_empty() {
            out.push(',');
        }
        out.push_str(extra);
        out.push('}');
    }
    out.push(' ');
}

/// One series: its label text and value.
#[derive(Debug)]
pub(crate) struct Series<V> {
    pub(crate) labels: Arc<str>,
    pub(crate) value: V,
}

#[derive(Debug)]
struct Slots<V> {
    /// foldhash, not SipHash: a label set is hashed on every lookup, and the family's series cap
    /// bounds what hostile label values could do to the table.
    index: HashMap<Arc<str>, Arc<Series<V>>, foldhash::fast::RandomState>,
    ordered: Vec<Arc<Series<V>>>,
}

/// A named family of series of one kind, capped at `max_series` label sets.
pub(crate) struct Family<V> {
    pub(crate) name: String,
    pub(crate) label_names: Box<[String]>,
    kind: Kind,
    headers: [String; 2],
    max_series: usize,
    make: Box<dyn Fn() -> V + Send + Sync>,
    slots: RwLock<Slots<V>>,
    overflow: OnceLock<Arc<Series<V>>>,
    overflow_folds: AtomicU64,
    warned: AtomicBool,
}

impl<V> std::fmt::Debug for Family<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.name)
            .field("label_names", &self.label_names)
            .field("kind", &self.kind)
            .field("max_series", &self.max_series)
            .finish_non_exhaustive()
    }
}

thread_local! {
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<V: SeriesValue> Family<V> {
    /// A family; `name` is the base name (a counter's samples add `_total`).
    pub(crate) fn new(
        name: &str,
        help: &str,
        kind: Kind,
        label_names: &[&str],
        max_series: usize,
        make: impl Fn() -> V + Send + Sync + 'static,
    ) -> Self {
        let headers = [Format::Prometheus, Format::OpenMetrics].map(|format| {
            let family_name = match (kind, format) {
                (Kind::Counter, Format::Prometheus) => format!("{name}_total"),
                _ => name.to_owned(),
            };
            let type_name = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let mut h = format!(
                "# HELP {family_name} {}\n# TYPE {family_name} {type_name}\n",
                encode::escape_help(help, format)
            );
            if format == Format::OpenMetrics {
                for unit in ["seconds", "bytes"] {
                    if name.ends_with(&format!("_{unit}")) {
                        h.push_str(&format!("# UNIT {family_name} {unit}\n"));
                    }
                }
            }
            h
        });
        Self {
            name: name.to_owned(),
            label_names: label_names.iter().map(|s| (*s).to_owned()).collect(),
            kind,
            headers,
            max_series: max_series.max(1),
            make: Box::new(make),
            slots: RwLock::new(Slots {
                index: HashMap::default(),
                ordered: Vec::new(),
            }),
            overflow: OnceLock::new(),
            overflow_folds: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// Runs `f` on the series for `values` (one per label name, in order), creating it or
    /// folding it into the overflow series. Extra values are ignored, missing ones are empty.
    pub(crate) fn with<R>(&self, values: &[&str], f: impl FnOnce(&V) -> R) -> R {
        KEY.with(|key| match key.try_borrow_mut() {
            Ok(mut key) => {
                key.clear();
                encode::push_label_pairs(
                    &mut key,
                    &self.label_names,
                    values.iter().copied().chain(std::iter::repeat("")),
                );
                self.with_key(&key, f)
            }
            // Re-entered from inside `f` (a callback recording another metric): use a fresh buffer.
            Err(_) => {
                let mut key = String::new();
                encode::push_label_pairs(
                    &mut key,
                    &self.label_names,
                    values.iter().copied().chain(std::iter::repeat("")),
                );
                self.with_key(&key, f)
            }
        })
    }

    /// The series for `values`, shared (for typed handles that keep it).
    pub(crate) fn series(&self, values: &[&str]) -> Arc<Series<V>> {
        let mut key = String::new();
        encode::push_label_pairs(
            &mut key,
            &self.label_names,
            values.iter().copied().chain(std::iter::repeat("")),
        );
        self.lookup(&key)
    }

    pub(crate) fn with_key<R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> R {
        {
            let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
            if let Some(series) = slots.index.get(key) {
                return f(&series.value);
            }
        }
        f(&self.lookup(key).value)
    }

    /// The series for the label text `key`, created when the family is under its cap; `None`
    /// when the family is full and `key` is not among its series (nothing is counted then).
    pub(crate) fn kept(&self, key: &str) -> Option<Arc<Series<V>>> {
        {
            let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
            if let Some(series) = slots.index.get(key) {
                return Some(series.clone());
            }
            // A full family never takes the write lock for a label set it will not keep.
            if slots.ordered.len() >= self.max_series {
                return None;
            }
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if let Some(series) = slots.index.get(key) {
            return Some(series.clone());
        }
        if slots.ordered.len() < self.max_series {
            let labels: Arc<str> = Arc::from(key);
            let series = Arc::new(Series {
                labels: labels.clone(),
                value: (self.make)(),
            });
            slots.index.insert(labels, series.clone());
            slots.ordered.push(series.clone());
            return Some(series);
        }
        None
    }

    /// The series for `key`, or the overflow series (counting the fold) when the family is full.
    pub(crate) fn lookup(&self, key: &str) -> Arc<Series<V>> {
        if let Some(series) = self.kept(key) {
            return series;
        }
        self.overflow_folds.fetch_add(1, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                metric = %self.name,
                max_series = self.max_series,
                "metric family reached its series limit; new label sets are folded into the otel_metric_overflow=\"true\" series (see watchpost_metrics_overflow_total)"
            );
        }
        self.overflow
            .get_or_init(|| {
                Arc::new(Series {
                    labels: Arc::from(OVERFLOW_LABELS),
                    value: (self.make)(),
                })
            })
            .clone()
    }

    /// How many label sets were folded into the overflow series so far.
    pub(crate) fn overflow_folds(&self) -> u64 {
        self.overflow_folds.load(Ordering::Relaxed)
    }

    /// How many series the family holds, the overflow series included.
    pub(crate) fn series_count(&self) -> usize {
        self.slots
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .ordered
            .len()
            + usize::from(self.overflow.get().is_some())
    }

    /// The largest number of label sets kept before folding.
    pub(crate) fn max_series(&self) -> usize {
        self.max_series
    }

    /// Visits each series (overflow last).
    pub(crate) fn for_each(&self, mut f: impl FnMut(&str, &V)) {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        for s in &slots.ordered {
            f(&s.labels, &s.value);
        }
        drop(slots);
        if let Some(s) = self.overflow.get() {
            f(&s.labels, &s.value);
        }
    }

    /// Writes the family (metadata and every series) in `format`.
    pub(crate) fn write(&self, out: &mut String, format: Format) {
        out.push_str(&self.headers[usize::from(format == Format::OpenMetrics)]);
        self.for_each(|labels, value| value.write(out, &self.name, labels, format));
    }
}

/// Anything the registry can write at scrape time.
pub(crate) trait Collect: Send + Sync + std::fmt::Debug {
    /// Writes this collector's families in `format`.
    fn collect(&self, out: &mut String, format: Format);
    /// The family names this collector writes, with their label names (for docs and checks).
    fn describe(&self) -> Vec<(String, Vec<String>)>;
    /// For families with a cardinality cap: (name, folds so far).
    fn overflow(&self) -> Option<(&str, u64)> {
        None
    }
}

impl<V: SeriesValue> Collect for Family<V> {
    fn collect(&self, out: &mut String, format: Format) {
        self.write(out, format);
    }

    fn describe(&self) -> Vec<(String, Vec<String>)> {
        let name = match self.kind {
            Kind::Counter => format!("{}_total", self.name),
            _ => self.name.clone(),
        };
        vec![(name, self.label_names.to_vec())]
    }

    fn overflow(&self) -> Option<(&str, u64)> {
        (!self.label_names.is_empty()).then(|| (self.name.as_str(), self.overflow_folds()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_folds_new_label_sets_into_one_overflow_series() {
        let f = Family::new(
            "jobs",
            "Jobs.",
            Kind::Counter,
            &["kind"],
            3,
            CounterValue::default,
        );
        for i in 0..10 {
            f.with(&[&format!("k{i}")], |c| c.inc_by(1));
        }
        assert_eq!(f.series_count(), 4);
        assert_eq!(f.overflow_folds(), 7);
        let mut out = String::new();
        f.write(&mut out, Format::Prometheus);
        assert!(
            out.contains("jobs_total{otel_metric_overflow=\"true\"} 7\n"),
            "{out}"
        );
        assert!(out.contains("jobs_total{kind=\"k0\"} 1\n"));
        // An existing label set keeps its own series after the cap is reached.
        f.with(&["k1"], |c| c.inc_by(1));
        assert_eq!(f.overflow_folds(), 7);
    }

    #[test]
    fn histogram_writes_cumulative_buckets_and_exemplars_only_in_openmetrics() {
        let h = HistogramValue::new(Buckets::new(&[0.1, 1.0]));
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let span = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        h.observe(0.0625, None);
        h.observe(0.5, Some((trace, span)));
        h.observe(4.0, None);
        let mut prom = String::new();
        h.write(&mut prom, "d_seconds", "a=\"b\"", Format::Prometheus);
        assert_eq!(
            prom,
            "d_seconds_bucket{a=\"b\",le=\"0.1\"} 1\nd_seconds_bucket{a=\"b\",le=\"1.0\"} 2\nd_seconds_bucket{a=\"b\",le=\"+Inf\"} 3\nd_seconds_sum{a=\"b\"} 4.5625\nd_seconds_count{a=\"b\"} 3\n"
        );
        let mut om = String::new();
        h.write(&mut om, "d_seconds", "", Format::OpenMetrics);
        assert!(om.contains(
            "d_seconds_bucket{le=\"1.0\"} 2 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\",span_id=\"00f067aa0ba902b7\"} 0.5\n"
        ), "{om}");
    }
}
