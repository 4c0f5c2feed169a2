//! Error grouping: handler panics and 5xx responses folded into groups by a stable fingerprint, and `GET /errors`.
//!
//! A group's fingerprint hashes the kind, the message template (the message with numbers,
//! hex strings and quoted text replaced by placeholders, so `id 42` and `id 43` group
//! together) and the location (`file:line` for a panic, the route for a 5xx). The number
//! of groups is bounded: when full, the group seen least recently makes room.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use watchpost_core::{Access, SharedClock, SystemClock, authorize};

use crate::metrics::ErrorKind;

/// Default bound on the number of groups kept.
pub const DEFAULT_MAX_GROUPS: usize = 1000;

/// One group of similar errors.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorGroup {
    /// The stable fingerprint (16 hex digits).
    pub fingerprint: String,
    /// Panic or 5xx.
    pub kind: ErrorKind,
    /// The error type: `panic`, the problem `type` URI, or `http_<status>`.
    pub error_type: String,
    /// The message with variable parts replaced by placeholders.
    pub message_template: String,
    /// Where it happened: `file:line` for a panic, the route template for a 5xx.
    pub location: String,
    /// How many times it happened.
    pub count: u64,
    /// When it first happened.
    pub first_seen: DateTime<Utc>,
    /// When it last happened.
    pub last_seen: DateTime<Utc>,
    /// The request id of the latest occurrence.
    pub last_request_id: Option<String>,
}

/// An error to record.
#[derive(Debug, Clone)]
pub struct ErrorOccurrence<'a> {
    /// Panic or 5xx.
    pub kind: ErrorKind,
    /// The error type.
    pub error_type: &'a str,
    /// The message (made into a template before grouping).
    pub message: &'a str,
    /// Where it happened.
    pub location: &'a str,
    /// The request id.
    pub request_id: Option<&'a str>,
}

/// The bounded set of error groups; clones share it.
#[derive(Debug, Clone)]
pub struct ErrorGroups {
    inner: Arc<Mutex<HashMap<String, ErrorGroup>>>,
    max_groups: usize,
    clock: SharedClock,
}

impl Default for ErrorGroups {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_GROUPS, SystemClock::shared())
    }
}

impl ErrorGroups {
    /// Keeps at most `max_groups` groups (at least one), timestamped by `clock`.
    pub fn new(max_groups: usize, clock: SharedClock) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            max_groups: max_groups.max(1),
            clock,
        }
    }

    /// Records one occurrence; returns its group's fingerprint.
    pub fn record(&self, occurrence: &ErrorOccurrence<'_>) -> String {
        let template = message_template(occurrence.message);
        let fingerprint = fingerprint(
            occurrence.kind.as_str(),
            occurrence.error_type,
            &template,
            occurrence.location,
        );
        let now = self.clock.now();
        let mut groups = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(group) = groups.get_mut(&fingerprint) {
            group.count += 1;
            group.last_seen = now;
            group.last_request_id = occurrence.request_id.map(str::to_owned);
            return fingerprint;
        }
        if groups.len() >= self.max_groups
            && let Some(oldest) = groups
                .values()
                .min_by_key(|g| g.last_seen)
                .map(|g| g.fingerprint.clone())
        {
            groups.remove(&oldest);
        }
        groups.insert(
            fingerprint.clone(),
            ErrorGroup {
                fingerprint: fingerprint.clone(),
                kind: occurrence.kind,
                error_type: occurrence.error_type.to_owned(),
                message_template: template,
                location: occurrence.location.to_owned(),
                count: 1,
                first_seen: now,
                last_seen: now,
                last_request_id: occurrence.request_id.map(str::to_owned),
            },
        );
        fingerprint
    }

    /// Every group, most recently seen first.
    pub fn list(&self) -> Vec<ErrorGroup> {
        let groups = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<ErrorGroup> = groups.values().cloned().collect();
        list.sort_by(|a, b| {
            b.last_seen
                .cmp(&a.last_seen)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        list
    }

    /// One group by fingerprint.
    pub fn get(&self, fingerprint: &str) -> Option<ErrorGroup> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(fingerprint)
            .cloned()
    }
}

/// The body of `GET /errors`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorGroupList {
    /// The groups, most recently seen first.
    pub groups: Vec<ErrorGroup>,
}

/// The router serving `GET /errors` (root only); mount it under any prefix.
pub fn router(groups: ErrorGroups) -> axum::Router {
    axum::Router::new()
        .route("/errors", get(list_errors))
        .with_state(groups)
}

/// Lists the error groups.
#[cfg_attr(feature = "openapi", utoipa::path(
    get,
    path = "/errors",
    tag = "errors",
    responses(
        (status = 200, description = "Error groups, most recently seen first", body = ErrorGroupList),
        (status = 401, description = "No valid API key", content_type = "application/problem+json"),
        (status = 403, description = "Not a root key", content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
))]
async fn list_errors(State(groups): State<ErrorGroups>, parts: http::request::Parts) -> Response {
    match authorize(&parts.extensions, Access::Root) {
        Ok(_) => Json(ErrorGroupList {
            groups: groups.list(),
        })
        .into_response(),
        Err(problem) => problem
            .fill_from(&parts.extensions)
            .with_instance(parts.uri.path())
            .to_http_response()
            .into_response(),
    }
}

/// The OpenAPI description of [`router`].
#[cfg(feature = "openapi")]
pub fn openapi() -> utoipa::openapi::OpenApi {
    #[derive(utoipa::OpenApi)]
    #[openapi(
        paths(list_errors),
        components(schemas(ErrorGroupList, ErrorGroup, ErrorKind))
    )]
    struct Doc;
    <Doc as utoipa::OpenApi>::openapi()
}

/// Replaces the variable parts of a message (numbers, hex runs, quoted text) with placeholders.
pub fn message_template(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(256));
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if out.len() >= 256 {
            break;
        }
        match c {
            '"' | '\'' | '`' => {
                // Quoted text is data, not the template.
                for next in chars.by_ref() {
                    if next == c {
                        break;
                    }
                }
                out.push_str("<str>");
            }
            c if c.is_alphanumeric() => {
                // A word holding a digit (42, 0x1f, a uuid, user42) is data.
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '-' || n == '_' {
                        word.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if word.chars().any(|ch| ch.is_ascii_digit()) {
                    out.push_str("<n>");
                } else {
                    out.push_str(&word);
                }
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// FNV-1a (64 bit) over the parts, separated; stable across builds and processes.
fn fingerprint(kind: &str, error_type: &str, template: &str, location: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [kind, error_type, template, location] {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// What the panic hook saw about the latest panic on this thread.
#[derive(Debug, Clone)]
pub(crate) struct PanicReport {
    pub(crate) message: String,
    pub(crate) location: String,
    pub(crate) backtrace: String,
    /// Whether the hook already wrote the error line (it does, so panics in spawned tasks are not silent).
    pub(crate) logged: bool,
}

thread_local! {
    static LAST_PANIC: RefCell<Option<PanicReport>> = const { RefCell::new(None) };
}

/// Installs (once) a panic hook for panics that happen while a request is being served (in the
/// handler, or in a task spawned with [`crate::spawn`]): it writes one `exception` error line with
/// the message, location and backtrace inside the current span (so it also becomes a span event), and
/// remembers the report so the layer can group it. Panics outside a request go to the previous hook
/// unchanged. [`crate::logging::init`] calls this.
pub fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if crate::context::with_current(|ctx| ctx.is_none()) {
                // Lines held for their batch come out before the report, in order.
                crate::logging::flush_logs();
                previous(info);
                return;
            }
            let report = PanicReport {
                message: panic_message(info.payload()),
                location: info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_else(|| "unknown".to_owned()),
                backtrace: std::backtrace::Backtrace::force_capture().to_string(),
                logged: true,
            };
            tracing::event!(
                target: "watchpost_correlation",
                tracing::Level::ERROR,
                exception.message = %report.message,
                "exception.type" = "panic",
                exception.stacktrace = %report.backtrace,
                code.location = %report.location,
                "exception"
            );
            LAST_PANIC.with(|slot| *slot.borrow_mut() = Some(report));
        }));
    });
}

/// Takes what the hook recorded for the panic just caught on this thread, or builds a report from the payload.
pub(crate) fn take_panic_report(payload: &(dyn std::any::Any + Send)) -> PanicReport {
    LAST_PANIC
        .with(|slot| slot.borrow_mut().take())
        .unwrap_or_else(|| PanicReport {
            message: panic_message(payload),
            location: "unknown".to_owned(),
            backtrace: "unavailable: install_panic_hook was not called".to_owned(),
            logged: false,
        })
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use watchpost_core::ManualClock;

    #[test]
    fn templates_fold_variable_parts() {
        assert_eq!(
            message_template("user 42 not found"),
            message_template("user 43 not found")
        );
        assert_eq!(
            message_template("key \"abc\" missing at 0x1f"),
            "key <str> missing at <n>"
        );
        assert_eq!(message_template("deadbeef42 cafe"), "<n> cafe");
        assert_eq!(message_template("bad\ninput"), "bad input");
    }

    #[test]
    fn groups_count_and_stay_bounded() {
        let clock = ManualClock::new(Utc::now());
        let groups = ErrorGroups::new(2, Arc::new(clock.clone()));
        let occ = |msg: &'static str, rid: &'static str| ErrorOccurrence {
            kind: ErrorKind::Panic,
            error_type: "panic",
            message: msg,
            location: "src/x.rs:1",
            request_id: Some(rid),
        };
        let a = groups.record(&occ("id 1 broke", "r1"));
        clock.advance(std::time::Duration::from_secs(1));
        assert_eq!(groups.record(&occ("id 2 broke", "r2")), a);
        let g = groups.get(&a).expect("group exists");
        assert_eq!(g.count, 2);
        assert_eq!(g.last_request_id.as_deref(), Some("r2"));
        assert!(g.first_seen < g.last_seen);
        clock.advance(std::time::Duration::from_secs(1));
        let b = groups.record(&occ("other", "r3"));
        clock.advance(std::time::Duration::from_secs(1));
        let c = groups.record(&occ("third", "r4"));
        assert_eq!(groups.list().len(), 2);
        assert!(
            groups.get(&a).is_none(),
            "the least recently seen group makes room"
        );
        assert_eq!(groups.list()[0].fingerprint, c);
        assert!(groups.get(&b).is_some());
    }
}
