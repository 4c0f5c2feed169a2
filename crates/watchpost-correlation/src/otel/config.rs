//! [`OtelConfig`]: the `OTEL_*` environment variables, read strictly; a bad value is an error, never ignored.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `OTEL_SDK_DISABLED` | `false` | `true` turns export off (ids and logs keep working) |
//! | `OTEL_TRACES_EXPORTER` | `otlp` | `otlp` or `none` |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | unset: no export | collector base URL, `http://` only (`/v1/traces` is appended for HTTP) |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | unset | full traces URL, used as is; wins over the above |
//! | `OTEL_EXPORTER_OTLP_PROTOCOL` (`_TRACES_PROTOCOL`) | `http/protobuf` | `grpc` or `http/protobuf` |
//! | `OTEL_EXPORTER_OTLP_HEADERS` (`_TRACES_HEADERS`) | none | `key=value,key2=value2`, values URL-encoded |
//! | `OTEL_EXPORTER_OTLP_TIMEOUT` (`_TRACES_TIMEOUT`) | `10000` | export timeout in milliseconds |
//! | `OTEL_SERVICE_NAME` | the caller's default | `service.name` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | none | `key=value,...` resource attributes |
//! | `OTEL_TRACES_SAMPLER` | `parentbased_always_on` | `always_on`, `always_off`, `traceidratio`, `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio` |
//! | `OTEL_TRACES_SAMPLER_ARG` | `1.0` | the ratio for the `*traceidratio` samplers, 0 to 1 |
//! | `OTEL_PROPAGATORS` | `tracecontext,baggage` | `tracecontext`, `baggage`, `none` |
//! | `OTEL_BSP_MAX_QUEUE_SIZE` | `2048` | spans held for export; more are dropped and counted |
//! | `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` | `512` | spans per export call |
//! | `OTEL_BSP_SCHEDULE_DELAY` | `1000` | milliseconds between exports |

use std::fmt;
use std::time::Duration;

use crate::error::TelemetryError;

/// Where finished spans go (`OTEL_TRACES_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TracesExporter {
    /// Export over OTLP.
    Otlp,
    /// Export nothing.
    None,
}

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// gRPC through tonic.
    Grpc,
    /// Protobuf over HTTP POST to `/v1/traces`.
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The name the variable uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// The sampler (`OTEL_TRACES_SAMPLER` and `_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SamplerConfig {
    /// Sample everything.
    AlwaysOn,
    /// Sample nothing.
    AlwaysOff,
    /// Sample this fraction of traces by trace id.
    TraceIdRatio(f64),
    /// Follow the caller's decision; sample new roots.
    ParentBasedAlwaysOn,
    /// Follow the caller's decision; drop new roots.
    ParentBasedAlwaysOff,
    /// Follow the caller's decision; sample this fraction of new roots.
    ParentBasedTraceIdRatio(f64),
}

impl fmt::Display for SamplerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SamplerConfig::AlwaysOn => f.write_str("always_on"),
            SamplerConfig::AlwaysOff => f.write_str("always_off"),
            SamplerConfig::TraceIdRatio(r) => write!(f, "traceidratio({r})"),
            SamplerConfig::ParentBasedAlwaysOn => f.write_str("parentbased_always_on"),
            SamplerConfig::ParentBasedAlwaysOff => f.write_str("parentbased_always_off"),
            SamplerConfig::ParentBasedTraceIdRatio(r) => write!(f, "parentbased_traceidratio({r})"),
        }
    }
}

impl SamplerConfig {
    pub(crate) fn to_sdk(self) -> opentelemetry_sdk::trace::Sampler {
        use opentelemetry_sdk::trace::Sampler;
        match self {
            SamplerConfig::AlwaysOn => Sampler::AlwaysOn,
            SamplerConfig::AlwaysOff => Sampler::AlwaysOff,
            SamplerConfig::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            SamplerConfig::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerConfig::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerConfig::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

/// Which incoming headers continue a trace (`OTEL_PROPAGATORS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagators {
    /// W3C `traceparent`/`tracestate`.
    pub trace_context: bool,
    /// W3C `baggage`.
    pub baggage: bool,
}

impl Default for Propagators {
    fn default() -> Self {
        Self {
            trace_context: true,
            baggage: true,
        }
    }
}

/// OpenTelemetry configuration; plain fields, filled from the environment by [`OtelConfig::from_env`].
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    /// `OTEL_SDK_DISABLED`.
    pub sdk_disabled: bool,
    /// `OTEL_TRACES_EXPORTER`.
    pub traces_exporter: TracesExporter,
    /// The full traces endpoint (for HTTP already ending in `/v1/traces`); `None`: no export.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: OtlpProtocol,
    /// `OTEL_EXPORTER_OTLP_HEADERS`, decoded.
    pub headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`.
    pub timeout: Duration,
    /// `OTEL_SERVICE_NAME`.
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES`, decoded.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` with its argument.
    pub sampler: SamplerConfig,
    /// `OTEL_PROPAGATORS`.
    pub propagators: Propagators,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`.
    pub max_queue_size: usize,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`.
    pub max_export_batch_size: usize,
    /// `OTEL_BSP_SCHEDULE_DELAY`.
    pub schedule_delay: Duration,
}

impl OtelConfig {
    /// No export, default sampler and propagators, service name `service_name`.
    pub fn disabled(service_name: &str) -> Self {
        Self {
            sdk_disabled: false,
            traces_exporter: TracesExporter::Otlp,
            endpoint: None,
            protocol: OtlpProtocol::HttpProtobuf,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            service_name: service_name.to_owned(),
            resource_attributes: Vec::new(),
            sampler: SamplerConfig::ParentBasedAlwaysOn,
            propagators: Propagators::default(),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            schedule_delay: Duration::from_millis(1000),
        }
    }

    /// Export to `endpoint` (for HTTP, the base URL: `/v1/traces` is appended) over `protocol`.
    #[must_use]
    pub fn with_endpoint(mut self, protocol: OtlpProtocol, endpoint: &str) -> Self {
        self.protocol = protocol;
        self.endpoint = Some(signal_endpoint(protocol, endpoint));
        self
    }

    /// Whether spans are exported.
    pub fn export_enabled(&self) -> bool {
        !self.sdk_disabled
            && self.traces_exporter == TracesExporter::Otlp
            && self.endpoint.is_some()
    }

    /// Reads the process environment; `default_service_name` applies when `OTEL_SERVICE_NAME` is unset.
    pub fn from_env(default_service_name: &str) -> Result<Self, TelemetryError> {
        Self::from_lookup(default_service_name, |name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map instead of touching the process environment).
    pub fn from_lookup(
        default_service_name: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TelemetryError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut c = Self::disabled(default_service_name);

        if let Some(v) = get("OTEL_SDK_DISABLED") {
            c.sdk_disabled = parse_bool("OTEL_SDK_DISABLED", &v)?;
        }
        if let Some(v) = get("OTEL_TRACES_EXPORTER") {
            c.traces_exporter = parse_exporter(&v)?;
        }
        let protocol_var = if get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        } else {
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        };
        if let Some(v) = get(protocol_var) {
            c.protocol = match v.as_str() {
                "grpc" => OtlpProtocol::Grpc,
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                _ => return Err(invalid(protocol_var, &v, "accepted: grpc, http/protobuf")),
            };
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            check_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &v)?;
            c.endpoint = Some(v);
        } else if let Some(v) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            check_url("OTEL_EXPORTER_OTLP_ENDPOINT", &v)?;
            c.endpoint = Some(signal_endpoint(c.protocol, &v));
        }
        for var in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            if let Some(v) = get(var) {
                for (k, val) in parse_pairs(var, &v)? {
                    c.headers
                        .retain(|(existing, _)| !existing.eq_ignore_ascii_case(&k));
                    c.headers.push((k, val));
                }
            }
        }
        for var in [
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        ] {
            if let Some(v) = get(var) {
                c.timeout = Duration::from_millis(parse_u64(var, &v, 1)?);
            }
        }
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            c.resource_attributes = parse_pairs("OTEL_RESOURCE_ATTRIBUTES", &v)?;
            if let Some((_, name)) = c
                .resource_attributes
                .iter()
                .find(|(k, _)| k == "service.name")
            {
                c.service_name = name.clone();
            }
        }
        if let Some(v) = get("OTEL_SERVICE_NAME") {
            c.service_name = v;
        }
        c.sampler = parse_sampler(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG"))?;
        if let Some(v) = get("OTEL_PROPAGATORS") {
            c.propagators = parse_propagators(&v)?;
        }
        if let Some(v) = get("OTEL_BSP_MAX_QUEUE_SIZE") {
            c.max_queue_size = parse_u64("OTEL_BSP_MAX_QUEUE_SIZE", &v, 1)? as usize;
        }
        if let Some(v) = get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            c.max_export_batch_size = parse_u64("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &v, 1)? as usize;
        }
        if let Some(v) = get("OTEL_BSP_SCHEDULE_DELAY") {
            c.schedule_delay = Duration::from_millis(parse_u64("OTEL_BSP_SCHEDULE_DELAY", &v, 1)?);
        }
        Ok(c)
    }

    /// The effective configuration in one line, for the start-up log (header values are not shown).
    pub fn summary(&self) -> String {
        let export = if self.sdk_disabled {
            "off (OTEL_SDK_DISABLED=true)".to_owned()
        } else if self.traces_exporter == TracesExporter::None {
            "off (OTEL_TRACES_EXPORTER=none)".to_owned()
        } else if let Some(endpoint) = &self.endpoint {
            format!("otlp {} to {endpoint}", self.protocol.as_str())
        } else {
            "off (OTEL_EXPORTER_OTLP_ENDPOINT unset)".to_owned()
        };
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        format!(
            "export={export} service.name={} sampler={} propagators={}{} timeout={:?} queue={} headers=[{}]",
            self.service_name,
            self.sampler,
            if self.propagators.trace_context {
                "tracecontext"
            } else {
                ""
            },
            if self.propagators.baggage {
                ",baggage"
            } else {
                ""
            },
            self.timeout,
            self.max_queue_size,
            header_names.join(","),
        )
    }
}

fn invalid(variable: &'static str, value: &str, reason: impl Into<String>) -> TelemetryError {
    TelemetryError::InvalidVariable {
        variable,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn signal_endpoint(protocol: OtlpProtocol, base: &str) -> String {
    match protocol {
        OtlpProtocol::Grpc => base.to_owned(),
        OtlpProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
    }
}

fn check_url(variable: &'static str, value: &str) -> Result<(), TelemetryError> {
    let uri = value.parse::<http::Uri>().ok();
    match uri.as_ref().map(|u| (u.scheme_str(), u.host().is_some())) {
        Some((Some("http"), true)) => Ok(()),
        // The exporters are built without TLS; failing here beats silently dropping every span.
        Some((Some("https"), true)) => Err(invalid(
            variable,
            value,
            "https collector endpoints are not supported by this build (no TLS); send to a collector over http://, for example a local OpenTelemetry Collector sidecar",
        )),
        _ => Err(invalid(
            variable,
            value,
            "expected an http:// URL, for example http://otel-collector:4318",
        )),
    }
}

fn parse_bool(variable: &'static str, value: &str) -> Result<bool, TelemetryError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(variable, value, "accepted: true, false")),
    }
}

fn parse_u64(variable: &'static str, value: &str, min: u64) -> Result<u64, TelemetryError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            invalid(
                variable,
                value,
                format!("expected a whole number, at least {min}"),
            )
        })
}

fn parse_exporter(value: &str) -> Result<TracesExporter, TelemetryError> {
    let mut exporter = None;
    for item in value.split(',').map(str::trim) {
        exporter = Some(match item {
            "otlp" => TracesExporter::Otlp,
            "none" => TracesExporter::None,
            _ => {
                return Err(invalid(
                    "OTEL_TRACES_EXPORTER",
                    value,
                    "accepted: otlp, none",
                ));
            }
        });
        if exporter == Some(TracesExporter::None) {
            return Ok(TracesExporter::None);
        }
    }
    Ok(exporter.unwrap_or(TracesExporter::Otlp))
}

fn parse_propagators(value: &str) -> Result<Propagators, TelemetryError> {
    let mut p = Propagators {
        trace_context: false,
        baggage: false,
    };
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item {
            "tracecontext" => p.trace_context = true,
            "baggage" => p.baggage = true,
            "none" => {}
            _ => {
                return Err(invalid(
                    "OTEL_PROPAGATORS",
                    value,
                    "accepted: tracecontext, baggage, none",
                ));
            }
        }
    }
    Ok(p)
}

fn parse_sampler(
    name: Option<String>,
    arg: Option<String>,
) -> Result<SamplerConfig, TelemetryError> {
    let ratio = || -> Result<f64, TelemetryError> {
        match &arg {
            None => Ok(1.0),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    invalid(
                        "OTEL_TRACES_SAMPLER_ARG",
                        v,
                        "expected a number from 0 to 1, for example 0.25",
                    )
                }),
        }
    };
    let name = name.unwrap_or_else(|| "parentbased_always_on".to_owned());
    let sampler = match name.as_str() {
        "always_on" => SamplerConfig::AlwaysOn,
        "always_off" => SamplerConfig::AlwaysOff,
        "traceidratio" => SamplerConfig::TraceIdRatio(ratio()?),
        "parentbased_always_on" => SamplerConfig::ParentBasedAlwaysOn,
        "parentbased_always_off" => SamplerConfig::ParentBasedAlwaysOff,
        "parentbased_traceidratio" => SamplerConfig::ParentBasedTraceIdRatio(ratio()?),
        _ => {
            return Err(invalid(
                "OTEL_TRACES_SAMPLER",
                &name,
                "accepted: always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio",
            ));
        }
    };
    // An argument given to a sampler that takes none is still checked: a typo should not pass silently.
    if arg.is_some()
        && !matches!(
            sampler,
            SamplerConfig::TraceIdRatio(_) | SamplerConfig::ParentBasedTraceIdRatio(_)
        )
    {
        ratio()?;
    }
    Ok(sampler)
}

/// `key=value,key2=value2` with percent-encoded values.
fn parse_pairs(
    variable: &'static str,
    value: &str,
) -> Result<Vec<(String, String)>, TelemetryError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            invalid(
                variable,
                value,
                "expected key=value pairs separated by commas",
            )
        })?;
        let k = percent_decode(k.trim())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| invalid(variable, value, "a key is empty or badly percent-encoded"))?;
        let v = percent_decode(v.trim())
            .ok_or_else(|| invalid(variable, value, "a value is badly percent-encoded"))?;
        out.push((k, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<OtelConfig, TelemetryError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtelConfig::from_lookup("watchpost", |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_export_nothing() {
        let c = cfg(&[]).unwrap();
        assert!(!c.export_enabled());
        assert_eq!(c.sampler, SamplerConfig::ParentBasedAlwaysOn);
        assert_eq!(c.service_name, "watchpost");
        assert!(c.propagators.trace_context && c.propagators.baggage);
    }

    #[test]
    fn endpoint_protocol_headers_and_resource() {
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b,x=1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=fromattrs",
            ),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap();
        assert!(c.export_enabled());
        assert_eq!(
            c.endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            c.headers,
            vec![("api-key".into(), "a b".into()), ("x".into(), "1".into())]
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.service_name, "fromattrs");
        assert_eq!(c.sampler, SamplerConfig::ParentBasedTraceIdRatio(0.25));
        let g = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "svc"),
        ])
        .unwrap();
        assert_eq!(g.endpoint.as_deref(), Some("http://collector:4317"));
        assert_eq!(g.service_name, "svc");
    }

    #[test]
    fn disabled_and_none_export_nothing() {
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        assert!(cfg(&on).unwrap().export_enabled());
        let c = cfg(&[on[0], ("OTEL_SDK_DISABLED", "TRUE")]).unwrap();
        assert!(!c.export_enabled());
        let c = cfg(&[on[0], ("OTEL_TRACES_EXPORTER", "none")]).unwrap();
        assert!(!c.export_enabled());
        assert!(c.summary().contains("OTEL_TRACES_EXPORTER=none"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (vars, var) in [
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "half"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![("OTEL_TRACES_SAMPLER", "jaeger_remote")],
                "OTEL_TRACES_SAMPLER",
            ),
            (vec![("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED"),
            (
                vec![("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (vec![("OTEL_PROPAGATORS", "b3")], "OTEL_PROPAGATORS"),
            (
                vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_TIMEOUT", "-1")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
        ] {
            let err = cfg(&vars).expect_err("must be refused").to_string();
            assert!(err.starts_with(&format!("invalid {var}=")), "{err}");
        }
    }

    #[test]
    fn propagators_can_be_narrowed() {
        let c = cfg(&[("OTEL_PROPAGATORS", "tracecontext")]).unwrap();
        assert!(c.propagators.trace_context && !c.propagators.baggage);
        let c = cfg(&[("OTEL_PROPAGATORS", "none")]).unwrap();
        assert!(!c.propagators.trace_context);
    }
}
