//! The audit event model ([`AuditEvent`], [`NewEvent`], [`Action`], [`Outcome`], [`Actor`]) and its canonical JSON.
//!
//! Every event is serialised in camelCase. The canonical form used for hashing is the
//! event's JSON without `hash` and `prevHash`, with object keys sorted at every depth and
//! no insignificant whitespace; timestamps are always written with microsecond precision,
//! so the form survives a round trip through PostgreSQL and SQLite unchanged.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use watchpost_core::{Principal, RequestContext, Role};

/// What was done. Known actions serialise as snake_case words; anything else is [`Action::Custom`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// A resource was created.
    Create,
    /// A resource was changed.
    Update,
    /// A resource was deleted.
    Delete,
    /// A resource was read.
    Read,
    /// Someone logged in.
    Login,
    /// An API key was created.
    KeyCreated,
    /// An API key was revoked.
    KeyRevoked,
    /// A request was refused by the rate limiter.
    RateLimit,
    /// Configuration changed.
    ConfigChange,
    /// An incident was acknowledged.
    IncidentAcknowledged,
    /// An incident was resolved.
    IncidentResolved,
    /// Something the system did by itself (start, retention, key rotation).
    System,
    /// Any other action.
    Custom(String),
}

impl Action {
    /// The action as its wire word.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::Login => "login",
            Action::KeyCreated => "key_created",
            Action::KeyRevoked => "key_revoked",
            Action::RateLimit => "rate_limit",
            Action::ConfigChange => "config_change",
            Action::IncidentAcknowledged => "incident_acknowledged",
            Action::IncidentResolved => "incident_resolved",
            Action::System => "system",
            Action::Custom(s) => s,
        }
    }

    /// Reads a wire word; unknown words become [`Action::Custom`].
    pub fn parse(s: &str) -> Self {
        match s {
            "create" => Action::Create,
            "update" => Action::Update,
            "delete" => Action::Delete,
            "read" => Action::Read,
            "login" => Action::Login,
            "key_created" => Action::KeyCreated,
            "key_revoked" => Action::KeyRevoked,
            "rate_limit" => Action::RateLimit,
            "config_change" => Action::ConfigChange,
            "incident_acknowledged" => Action::IncidentAcknowledged,
            "incident_resolved" => Action::IncidentResolved,
            "system" => Action::System,
            other => Action::Custom(other.to_owned()),
        }
    }

    /// The action a request method implies (POST create, PUT/PATCH update, DELETE delete, GET/HEAD read).
    pub fn from_method(method: &http::Method) -> Self {
        match *method {
            http::Method::POST => Action::Create,
            http::Method::PUT | http::Method::PATCH => Action::Update,
            http::Method::DELETE => Action::Delete,
            http::Method::GET | http::Method::HEAD => Action::Read,
            ref other => Action::Custom(other.as_str().to_ascii_lowercase()),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || s.len() > 128 {
            return Err(serde::de::Error::custom(
                "action must be 1 to 128 characters",
            ));
        }
        Ok(Action::parse(&s))
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutcomeResult {
    /// It worked.
    Success,
    /// It failed.
    Failure,
    /// Recorded before the work ran (fail-closed mode); a completion event follows.
    Pending,
}

impl OutcomeResult {
    /// `success`, `failure` or `pending`.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeResult::Success => "success",
            OutcomeResult::Failure => "failure",
            OutcomeResult::Pending => "pending",
        }
    }

    /// Reads the wire word.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(OutcomeResult::Success),
            "failure" => Some(OutcomeResult::Failure),
            "pending" => Some(OutcomeResult::Pending),
            _ => None,
        }
    }
}

/// The outcome: a result and, for HTTP requests, the status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Success, failure or pending.
    pub result: OutcomeResult,
    /// The HTTP status, when there was one.
    pub status: Option<u16>,
}

impl Outcome {
    /// Success without a status.
    pub fn success() -> Self {
        Self {
            result: OutcomeResult::Success,
            status: None,
        }
    }

    /// Failure without a status.
    pub fn failure() -> Self {
        Self {
            result: OutcomeResult::Failure,
            status: None,
        }
    }

    /// From an HTTP status: below 400 is success.
    pub fn from_status(status: http::StatusCode) -> Self {
        Self {
            result: if status.as_u16() < 400 {
                OutcomeResult::Success
            } else {
                OutcomeResult::Failure
            },
            status: Some(status.as_u16()),
        }
    }
}

/// Who did it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// The API key's id.
    pub api_key_id: Option<String>,
    /// The API key's name.
    pub key_name: Option<String>,
    /// The tenant (the seeds' institutionId).
    pub tenant_id: Option<String>,
    /// The key's role.
    pub role: Option<Role>,
}

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Self {
            api_key_id: Some(p.key_id.to_string()),
            key_name: Some(p.key_name.to_string()),
            tenant_id: p.tenant_id.as_deref().map(str::to_owned),
            role: Some(p.role),
        }
    }
}

/// Timestamps as RFC 3339 with exactly six fractional digits, always UTC.
pub mod ts {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// `2026-01-02T03:04:05.123456Z`.
    pub fn format(t: &DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }

    /// Appends `"<format(t)>"` to `out` without chrono's format machinery (the hash path).
    pub fn write_quoted(out: &mut Vec<u8>, t: &DateTime<Utc>) {
        use chrono::{Datelike, Timelike};
        let (year, nanos) = (t.year(), t.nanosecond());
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            // Years chrono pads differently, and leap seconds: the general route.
            out.push(b'"');
            out.extend_from_slice(format(t).as_bytes());
            out.push(b'"');
            return;
        }
        let mut b = *b"\"0000-00-00T00:00:00.000000Z\"";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(1, 4, year as u32);
        put(6, 2, t.month());
        put(9, 2, t.day());
        put(12, 2, t.hour());
        put(15, 2, t.minute());
        put(18, 2, t.second());
        put(21, 6, nanos / 1000);
        out.extend_from_slice(&b);
    }

    /// Serde serializer.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format(t))
    }

    /// Serde deserializer (any RFC 3339 time, truncated to microseconds).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| super::micros(t.to_utc()))
            .map_err(serde::de::Error::custom)
    }
}

/// Truncates a timestamp to whole microseconds (what the databases keep).
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The hash that precedes the first event of every stream: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// Time-sortable id (UUIDv7).
    pub id: Uuid,
    /// When it happened (the caller's clock).
    #[serde(with = "ts")]
    pub occurred_at: DateTime<Utc>,
    /// When the writer sealed it into the chain.
    #[serde(with = "ts")]
    pub recorded_at: DateTime<Utc>,
    /// Who did it.
    pub actor: Actor,
    /// The HTTP method, for request events.
    pub method: Option<String>,
    /// The route template (`/incidents/{id}`), for request events.
    pub route: Option<String>,
    /// The request path, for request events.
    pub path: Option<String>,
    /// What was done.
    pub action: Action,
    /// The kind of resource acted on.
    pub resource_type: Option<String>,
    /// The resource acted on.
    pub resource_id: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The request id.
    pub request_id: Option<String>,
    /// The correlation id.
    pub correlation_id: Option<String>,
    /// The W3C trace id.
    pub trace_id: Option<String>,
    /// The client address.
    pub source_ip: Option<String>,
    /// The client's User-Agent.
    pub user_agent: Option<String>,
    /// Details (redacted, bounded).
    pub payload: Option<Value>,
    /// The writer stream this event is chained in.
    pub stream: String,
    /// Position in the stream, from 1.
    pub seq: i64,
    /// The previous event's hash (or [`GENESIS_HASH`]).
    pub prev_hash: String,
    /// `SHA-256(prevHash bytes || canonical JSON)`, hex.
    pub hash: String,
}

impl AuditEvent {
    /// The canonical JSON the hash covers: every field but `hash` and `prevHash`, keys sorted.
    pub fn canonical_json(&self) -> String {
        String::from_utf8(self.canonical_bytes()).unwrap_or_default()
    }

    /// [`canonical_json`](Self::canonical_json) as bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical JSON to `out`, writing the fields directly in sorted key order.
    /// Every hash (sealing and verification) goes through here, so it builds no `Value` tree;
    /// the unit tests check it against the generic route through `serde_json::to_value`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        fn key(out: &mut Vec<u8>, k: &str) {
            if out.last() != Some(&b'{') {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
        }
        fn string(out: &mut Vec<u8>, s: &str) {
            // Writing a string into a Vec cannot fail; serde_json escapes exactly as the Value route does.
            let _ = serde_json::to_writer(&mut *out, s);
        }
        fn opt(out: &mut Vec<u8>, s: Option<&str>) {
            match s {
                Some(s) => string(out, s),
                None => out.extend_from_slice(b"null"),
            }
        }
        fn int(out: &mut Vec<u8>, n: i64) {
            use std::io::Write;
            let _ = write!(out, "{n}");
        }
        // Keys in byte order, as `canonical_bytes(&Value)` would sort them.
        out.push(b'{');
        key(out, "action");
        string(out, self.action.as_str());
        key(out, "actor");
        out.push(b'{');
        key(out, "apiKeyId");
        opt(out, self.actor.api_key_id.as_deref());
        key(out, "keyName");
        opt(out, self.actor.key_name.as_deref());
        key(out, "role");
        opt(out, self.actor.role.map(|r| r.as_str()));
        key(out, "tenantId");
        opt(out, self.actor.tenant_id.as_deref());
        out.push(b'}');
        key(out, "correlationId");
        opt(out, self.correlation_id.as_deref());
        key(out, "id");
        out.push(b'"');
        out.extend_from_slice(
            self.id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        );
        out.push(b'"');
        key(out, "method");
        opt(out, self.method.as_deref());
        key(out, "occurredAt");
        ts::write_quoted(out, &self.occurred_at);
        key(out, "outcome");
        out.push(b'{');
        key(out, "result");
        string(out, self.outcome.result.as_str());
        key(out, "status");
        match self.outcome.status {
            Some(s) => int(out, i64::from(s)),
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        key(out, "path");
        opt(out, self.path.as_deref());
        key(out, "payload");
        match &self.payload {
            Some(p) => write_canonical(p, out),
            None => out.extend_from_slice(b"null"),
        }
        key(out, "recordedAt");
        ts::write_quoted(out, &self.recorded_at);
        key(out, "requestId");
        opt(out, self.request_id.as_deref());
        key(out, "resourceId");
        opt(out, self.resource_id.as_deref());
        key(out, "resourceType");
        opt(out, self.resource_type.as_deref());
        key(out, "route");
        opt(out, self.route.as_deref());
        key(out, "seq");
        int(out, self.seq);
        key(out, "sourceIp");
        opt(out, self.source_ip.as_deref());
        key(out, "stream");
        string(out, &self.stream);
        key(out, "traceId");
        opt(out, self.trace_id.as_deref());
        key(out, "userAgent");
        opt(out, self.user_agent.as_deref());
        out.push(b'}');
    }

    /// The tenant this event belongs to.
    pub fn tenant_id(&self) -> Option<&str> {
        self.actor.tenant_id.as_deref()
    }
}

/// An event to record: everything but the chain fields and the recording time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Id; generated when `None`.
    pub id: Option<Uuid>,
    /// When it happened; the recorder's clock when `None`.
    pub occurred_at: Option<DateTime<Utc>>,
    /// Who did it.
    pub actor: Actor,
    /// HTTP method.
    pub method: Option<String>,
    /// Route template.
    pub route: Option<String>,
    /// Request path.
    pub path: Option<String>,
    /// What was done.
    pub action: Action,
    /// Resource kind.
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Request id.
    pub request_id: Option<String>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Trace id.
    pub trace_id: Option<String>,
    /// Client address.
    pub source_ip: Option<String>,
    /// User-Agent.
    pub user_agent: Option<String>,
    /// Details; redacted and bounded when recorded.
    pub payload: Option<Value>,
}

impl NewEvent {
    /// An event for `action` with a successful outcome and nothing else known.
    pub fn new(action: Action) -> Self {
        Self {
            id: None,
            occurred_at: None,
            actor: Actor::default(),
            method: None,
            route: None,
            path: None,
            action,
            resource_type: None,
            resource_id: None,
            outcome: Outcome::success(),
            request_id: None,
            correlation_id: None,
            trace_id: None,
            source_ip: None,
            user_agent: None,
            payload: None,
        }
    }

    /// Sets the actor.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<Actor>) -> Self {
        self.actor = actor.into();
        self
    }

    /// Sets the resource acted on.
    #[must_use]
    pub fn resource(mut self, kind: impl Into<String>, id: impl Into<String>) -> Self {
        self.resource_type = Some(kind.into());
        self.resource_id = Some(id.into());
        self
    }

    /// Sets the outcome.
    #[must_use]
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the payload.
    #[must_use]
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Copies request id, correlation id, trace id, client address, route and principal from a request context.
    #[must_use]
    pub fn context(mut self, ctx: &RequestContext) -> Self {
        self.request_id = Some(ctx.request_id.to_string());
        self.correlation_id = Some(ctx.correlation_id.to_string());
        self.trace_id = ctx.trace_id.map(|t| t.to_string());
        self.source_ip = ctx.client_ip.map(|ip| ip.to_string());
        if self.route.is_none() {
            self.route = ctx.route.as_deref().map(str::to_owned);
        }
        if let Some(p) = &ctx.principal {
            self.actor = Actor::from(p);
        }
        self
    }

    /// Turns this into an unsealed event (chain fields empty, NUL characters replaced) recorded at `now`.
    /// The writer seals it; stores and tests may seal it themselves with a [`ChainHead`](crate::ChainHead).
    pub fn into_event(self, now: DateTime<Utc>) -> AuditEvent {
        let mut e = AuditEvent {
            id: self.id.unwrap_or_else(Uuid::now_v7),
            occurred_at: micros(self.occurred_at.unwrap_or(now)),
            recorded_at: micros(now),
            actor: self.actor,
            method: self.method,
            route: self.route,
            path: self.path,
            action: self.action,
            resource_type: self.resource_type,
            resource_id: self.resource_id,
            outcome: self.outcome,
            request_id: self.request_id,
            correlation_id: self.correlation_id,
            trace_id: self.trace_id,
            source_ip: self.source_ip,
            user_agent: self.user_agent,
            payload: self.payload,
            stream: String::new(),
            seq: 0,
            prev_hash: String::new(),
            hash: String::new(),
        };
        sanitize(&mut e);
        e
    }
}

fn clean(s: &mut String) {
    // PostgreSQL text cannot hold NUL; replace it everywhere so every store keeps the same bytes.
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

fn clean_opt(s: &mut Option<String>) {
    if let Some(s) = s {
        clean(s);
    }
}

fn clean_value(v: &mut Value) {
    match v {
        Value::String(s) => clean(s),
        Value::Array(a) => a.iter_mut().for_each(clean_value),
        Value::Object(m) => {
            let dirty = m.keys().any(|k| k.contains('\0'));
            if dirty {
                let old = std::mem::take(m);
                for (mut k, v) in old {
                    clean(&mut k);
                    m.insert(k, v);
                }
            }
            m.values_mut().for_each(clean_value);
        }
        _ => {}
    }
}

/// Makes an event storable everywhere alike: no NUL characters, `null` payload as none.
fn sanitize(e: &mut AuditEvent) {
    for s in [
        &mut e.actor.api_key_id,
        &mut e.actor.key_name,
        &mut e.actor.tenant_id,
        &mut e.method,
        &mut e.route,
        &mut e.path,
        &mut e.resource_type,
        &mut e.resource_id,
        &mut e.request_id,
        &mut e.correlation_id,
        &mut e.trace_id,
        &mut e.source_ip,
        &mut e.user_agent,
    ] {
        clean_opt(s);
    }
    if let Action::Custom(s) = &mut e.action {
        clean(s);
    }
    if matches!(e.payload, Some(Value::Null)) {
        e.payload = None;
    }
    if let Some(p) = &mut e.payload {
        clean_value(p);
    }
}

/// Writes `v` canonically: object keys sorted by their UTF-8 bytes at every depth, no whitespace.
pub fn canonical_string(v: &Value) -> String {
    let bytes = canonical_bytes(v);
    // serde_json writes valid UTF-8 only.
    String::from_utf8(bytes).unwrap_or_default()
}

/// [`canonical_string`] as bytes, without the intermediate strings (what the hash reads).
pub fn canonical_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // Writing a string or a scalar into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_sorts_keys_at_every_depth() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"z":[{"y":1,"x":2}],"c":"é"}}"#).unwrap();
        assert_eq!(
            canonical_string(&v),
            r#"{"a":{"c":"é","z":[{"x":2,"y":1}]},"b":1}"#
        );
    }

    /// The generic route the direct writer must agree with.
    fn via_value(e: &AuditEvent) -> Vec<u8> {
        let mut v = serde_json::to_value(e).unwrap();
        if let Value::Object(map) = &mut v {
            map.remove("hash");
            map.remove("prevHash");
        }
        canonical_bytes(&v)
    }

    #[test]
    fn canonical_form_matches_the_value_route() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.000007Z")
            .unwrap()
            .to_utc();
        let bare = NewEvent::new(Action::Custom("we\"ird\u{1}\u{e9}".into())).into_event(now);
        let mut full = NewEvent::new(Action::Update)
            .resource("incident", "inc-1\\")
            .outcome(Outcome::from_status(http::StatusCode::CONFLICT))
            .payload(serde_json::json!({"z": [1, 2.5, {"b": null, "a": "\u{2028}"}], "a": true}))
            .into_event(now);
        full.actor = Actor {
            api_key_id: Some("k".into()),
            key_name: Some("n\t".into()),
            tenant_id: Some("t".into()),
            role: Some(Role::Tenant),
        };
        for s in [
            &mut full.method,
            &mut full.route,
            &mut full.path,
            &mut full.request_id,
            &mut full.correlation_id,
            &mut full.trace_id,
            &mut full.source_ip,
            &mut full.user_agent,
        ] {
            *s = Some("x/\u{7f}".into());
        }
        full.stream = "s".into();
        full.seq = i64::MAX;
        full.occurred_at = DateTime::parse_from_rfc3339("0999-12-31T23:59:59.999999Z")
            .unwrap()
            .to_utc();
        for e in [&bare, &full] {
            assert_eq!(
                String::from_utf8(e.canonical_bytes()).unwrap(),
                String::from_utf8(via_value(e)).unwrap()
            );
        }
        let mut far = bare.clone();
        far.recorded_at = DateTime::<Utc>::MIN_UTC;
        far.occurred_at = DateTime::<Utc>::MAX_UTC;
        assert_eq!(far.canonical_bytes(), via_value(&far));
    }

    #[test]
    fn actions_round_trip() {
        for a in ["create", "key_revoked", "incident_resolved", "my.custom"] {
            assert_eq!(Action::parse(a).as_str(), a);
        }
        assert_eq!(Action::from_method(&http::Method::PATCH), Action::Update);
    }

    #[test]
    fn nul_is_replaced_and_timestamps_are_micros() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .to_utc();
        let mut n = NewEvent::new(Action::Create).payload(serde_json::json!({"a\u{0}": "b\u{0}"}));
        n.path = Some("/x\u{0}".into());
        let e = n.into_event(now);
        assert_eq!(e.path.as_deref(), Some("/x\u{FFFD}"));
        assert_eq!(e.payload.unwrap()["a\u{FFFD}"], "b\u{FFFD}");
        assert_eq!(ts::format(&e.recorded_at), "2026-01-02T03:04:05.123456Z");
    }
}
