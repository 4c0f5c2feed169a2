//! The exposition formats: the hand-written text writer for Watchpost's own families, and the
//! converter that turns prometheus-client's OpenMetrics output into Prometheus text 0.0.4.
//!
//! # What is written by hand, and why
//!
//! Watchpost's own families (HTTP, process, build, overflow, application metrics made with
//! [`MetricsRegistry`](crate::MetricsRegistry)) are stored in this crate and written to text by
//! the few functions below, not by prometheus-client's encoder:
//!
//! - the label text of each series is escaped once, when the series is created, and kept
//!   ready to copy (`method="GET",route="/x"`), so a scrape of 10,000 series is mostly
//!   `memcpy` plus integer formatting, with no per-scrape label encoding and no
//!   dynamic dispatch per sample;
//! - the same storage is written in both formats (Prometheus text 0.0.4, the default, and
//!   OpenMetrics 1.0), whereas prometheus-client only writes OpenMetrics;
//! - the cardinality cap and its `otel_metric_overflow="true"` series need our own storage anyway.
//!
//! Registries of prometheus-client handed in by other crates are encoded by prometheus-client
//! itself (OpenMetrics); for the 0.0.4 format [`openmetrics_to_prometheus`] rewrites that
//! output line by line (counter family names gain `_total`, `info` becomes a `gauge` named
//! `<name>_info`, `unknown` becomes `untyped`, `# UNIT`, `_created` samples and exemplars are
//! dropped).

use std::fmt::Write as _;

/// The two exposition formats `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`): the default; no exemplars.
    Prometheus,
    /// OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`): ends in `# EOF`, carries exemplars.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Appends `v` in decimal without going through `fmt`.
pub(crate) fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

/// Appends `v` as a signed decimal.
pub(crate) fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends `v` as both formats spell floats (`+Inf`, `-Inf`, `NaN`, otherwise shortest decimal).
pub(crate) fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        push_i64(out, v as i64);
    } else {
        // Writing to a String cannot fail.
        let _ = write!(out, "{v}");
    }
}

/// Appends a label value escaped as both formats require (`\\`, `\"`, `\n`).
pub(crate) fn push_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `name="value",...` for the pairs, escaped: the stored label text of a series.
pub(crate) fn push_label_pairs<'a>(
    out: &mut String,
    names: &[String],
    values: impl IntoIterator<Item = &'a str>,
) {
    for (i, (name, value)) in names.iter().zip(values).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        push_label_value(out, value);
        out.push('"');
    }
}

/// Escapes `HELP` text for `format`: 0.0.4 escapes `\` and newlines, OpenMetrics also `"`.
pub(crate) fn escape_help(help: &str, format: Format) -> String {
    let mut out = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`, not `le`/`quantile`.
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with("__")
        && !matches!(name, "le" | "quantile" | "otel_metric_overflow")
}

/// Rewrites prometheus-client's OpenMetrics text as Prometheus text 0.0.4, appending to `out`.
///
/// The input must not contain `# EOF` (encode with `encode_registry`, not `encode`); a line
/// that is one is dropped anyway.
pub fn openmetrics_to_prometheus(input: &str, out: &mut String) {
    let mut help: Option<(&str, &str)> = None;
    let mut family_kind = "";
    for line in input.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            family_kind = kind;
            let (name_suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "gauge" => ("", "gauge"),
                "histogram" => ("", "histogram"),
                "summary" => ("", "summary"),
                // gaugehistogram, stateset, unknown: no 0.0.4 equivalent that keeps the samples typed.
                _ => ("", "untyped"),
            };
            if let Some((help_name, text)) = help.take()
                && help_name == name
            {
                out.push_str("# HELP ");
                out.push_str(name);
                out.push_str(name_suffix);
                out.push(' ');
                out.push_str(&text.replace("\\\"", "\""));
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(name_suffix);
            out.push(' ');
            out.push_str(kind);
            out.push('\n');
        } else if line.starts_with('#') || line.is_empty() {
            // `# UNIT` has no 0.0.4 equivalent; `# EOF` ends only OpenMetrics.
        } else {
            let sample = strip_exemplar(line);
            let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
            let name = &sample[..name_end];
            if name.ends_with("_created")
                && matches!(family_kind, "counter" | "histogram" | "summary")
            {
                continue;
            }
            out.push_str(sample);
            out.push('\n');
        }
    }
}

/// The sample line without its ` # {...} value [timestamp]` exemplar, label quotes respected.
fn strip_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 0;
    // Skip the label set, if any, honouring quoted values with escapes.
    if let Some(open) = line.find('{') {
        let first_space = line.find(' ').unwrap_or(line.len());
        if open < first_space {
            i = open + 1;
            let mut in_quotes = false;
            while i < bytes.len() {
                match bytes[i] {
                    b'\\' if in_quotes => i += 1,
                    b'"' => in_quotes = !in_quotes,
                    b'}' if !in_quotes => break,
                    _ => {}
                }
                i += 1;
            }
        }
    }
    match line[i.min(line.len())..].find(" # ") {
        Some(pos) => &line[..i + pos],
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_spelled_as_the_formats_require() {
        let mut s = String::new();
        push_u64(&mut s, 0);
        s.push(' ');
        push_u64(&mut s, u64::MAX);
        s.push(' ');
        push_i64(&mut s, -42);
        s.push(' ');
        push_f64(&mut s, 0.25);
        s.push(' ');
        push_f64(&mut s, 3.0);
        s.push(' ');
        push_f64(&mut s, f64::INFINITY);
        s.push(' ');
        push_f64(&mut s, f64::NAN);
        assert_eq!(s, "0 18446744073709551615 -42 0.25 3 +Inf NaN");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        push_label_pairs(&mut s, &["a".into(), "b".into()], ["x\"y", "1\\2\n"]);
        assert_eq!(s, r#"a="x\"y",b="1\\2\n""#);
    }

    #[test]
    fn names_are_validated() {
        assert!(is_valid_metric_name("http_server_request_duration_seconds"));
        assert!(is_valid_metric_name("a:b"));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_metric_name("a-b"));
        assert!(!is_valid_metric_name(""));
        assert!(is_valid_label_name("route"));
        assert!(!is_valid_label_name("__name__"));
        assert!(!is_valid_label_name("le"));
        assert!(!is_valid_label_name("a:b"));
    }

    #[test]
    fn openmetrics_is_rewritten_as_0_0_4() {
        let om = "# HELP jobs Jobs done.\n# TYPE jobs counter\njobs_total{kind=\"a # {b}\"} 3 # {trace_id=\"ab\"} 1.0 123\njobs_created{kind=\"a\"} 1.7e9\n\
                  # HELP build Build.\n# TYPE build info\nbuild_info{v=\"1\"} 1\n\
                  # HELP wait_seconds Wait.\n# TYPE wait_seconds histogram\n# UNIT wait_seconds seconds\nwait_seconds_bucket{le=\"+Inf\"} 1\nwait_seconds_sum 0.5\nwait_seconds_count 1\n# EOF\n";
        let mut out = String::new();
        openmetrics_to_prometheus(om, &mut out);
        assert_eq!(
            out,
            "# HELP jobs_total Jobs done.\n# TYPE jobs_total counter\njobs_total{kind=\"a # {b}\"} 3\n\
             # HELP build_info Build.\n# TYPE build_info gauge\nbuild_info{v=\"1\"} 1\n\
             # HELP wait_seconds Wait.\n# TYPE wait_seconds histogram\nwait_seconds_bucket{le=\"+Inf\"} 1\nwait_seconds_sum 0.5\nwait_seconds_count 1\n"
        );
    }
}
