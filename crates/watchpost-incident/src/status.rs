//! The public status page: `GET /status/summary.json` (Atlassian Statuspage's summary shape)
//! and `GET /status` (server-rendered, accessible HTML; no scripts, no external assets; refreshes itself).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use watchpost_core::{Problem, Severity};

use crate::model::{Incident, IncidentStatus, TimelineEvent};
use crate::service::IncidentService;
use crate::store::IncidentQuery;

/// Days of history on the status page.
pub const HISTORY_DAYS: i64 = 90;

/// Statuspage component states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    /// Fine.
    Operational,
    /// Under a maintenance window.
    UnderMaintenance,
    /// A warning incident is open.
    DegradedPerformance,
    /// Part of it is down.
    PartialOutage,
    /// A critical incident is open.
    MajorOutage,
}

impl ComponentStatus {
    fn label(self) -> &'static str {
        match self {
            ComponentStatus::Operational => "Operational",
            ComponentStatus::UnderMaintenance => "Under maintenance",
            ComponentStatus::DegradedPerformance => "Degraded performance",
            ComponentStatus::PartialOutage => "Partial outage",
            ComponentStatus::MajorOutage => "Major outage",
        }
    }
}

/// The data behind both renderings.
#[derive(Debug, Clone)]
pub struct StatusData {
    /// When computed.
    pub now: DateTime<Utc>,
    /// Open incidents, newest first.
    pub open: Vec<Incident>,
    /// Incidents started in the last 90 days, newest first.
    pub history: Vec<Incident>,
    /// Component name to state.
    pub components: BTreeMap<String, ComponentStatus>,
    /// Active or upcoming maintenance windows.
    pub maintenance: Vec<crate::policy::MaintenanceWindow>,
}

impl StatusData {
    /// `none`, `minor`, `major` or `critical`, with Statuspage's description.
    pub fn indicator(&self) -> (&'static str, &'static str) {
        let worst = self.open.iter().map(|i| i.severity).max();
        match worst {
            Some(Severity::Critical) => ("critical", "Major System Outage"),
            Some(Severity::Warning) => ("minor", "Minor Service Outage"),
            _ if self
                .components
                .values()
                .any(|c| *c == ComponentStatus::UnderMaintenance) =>
            {
                ("maintenance", "Service Under Maintenance")
            }
            _ => ("none", "All Systems Operational"),
        }
    }
}

/// Loads the status page data.
pub async fn load(service: &IncidentService) -> Result<StatusData, crate::IncidentError> {
    let now = service.now();
    let store = service.store();
    let mut open = Vec::new();
    for status in [IncidentStatus::Triggered, IncidentStatus::Acknowledged] {
        open.extend(
            store
                .list(IncidentQuery {
                    status: Some(status),
                    limit: 500,
                    ..IncidentQuery::default()
                })
                .await?
                .items,
        );
    }
    open.sort_by_key(|i| std::cmp::Reverse(i.started_at));
    let history = store
        .list(IncidentQuery {
            since: Some(now - Duration::days(HISTORY_DAYS)),
            limit: 500,
            ..IncidentQuery::default()
        })
        .await?
        .items;
    let mut components: BTreeMap<String, ComponentStatus> = BTreeMap::new();
    for i in history.iter().chain(open.iter()) {
        if let Some(s) = &i.service {
            components
                .entry(s.clone())
                .or_insert(ComponentStatus::Operational);
        }
    }
    let maintenance: Vec<_> = service
        .config()
        .policy
        .maintenance
        .iter()
        .filter(|w| w.ends_at > now)
        .cloned()
        .collect();
    for w in maintenance.iter().filter(|w| w.active_at(now)) {
        if let Some(s) = &w.service {
            let e = components
                .entry(s.clone())
                .or_insert(ComponentStatus::Operational);
            *e = (*e).max(ComponentStatus::UnderMaintenance);
        }
    }
    for i in &open {
        if let Some(s) = &i.service {
            let state = match i.severity {
                Severity::Critical => ComponentStatus::MajorOutage,
                Severity::Warning => ComponentStatus::DegradedPerformance,
                Severity::Info => ComponentStatus::Operational,
            };
            let e = components
                .entry(s.clone())
                .or_insert(ComponentStatus::Operational);
            *e = (*e).max(state);
        }
    }
    Ok(StatusData {
        now,
        open,
        history,
        components,
        maintenance,
    })
}

fn statuspage_status(i: &Incident) -> &'static str {
    if i.status == IncidentStatus::Resolved {
        return "resolved";
    }
    i.latest_update()
        .map(|(_, s, _)| s.as_str())
        .unwrap_or("investigating")
}

fn impact(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "minor",
        Severity::Info => "none",
    }
}

fn component_id(name: &str) -> String {
    format!(
        "c-{}",
        crate::alertmanager::fingerprint(
            &[("service".to_owned(), name.to_owned())]
                .into_iter()
                .collect()
        )
    )
}

fn summary(data: &StatusData, service: &IncidentService) -> serde_json::Value {
    let config = service.config();
    let (indicator, description) = data.indicator();
    let page_url = config.public_url.clone().unwrap_or_default();
    let components: Vec<_> = data
        .components
        .iter()
        .enumerate()
        .map(|(n, (name, status))| {
            serde_json::json!({
                "id": component_id(name), "name": name, "status": status, "position": n + 1,
                "description": null, "showcase": true, "group_id": null, "page_id": "watchpost",
                "group": false, "only_show_if_degraded": false,
                "created_at": data.now, "updated_at": data.now, "start_date": null,
            })
        })
        .collect();
    let incidents: Vec<_> = data
        .open
        .iter()
        .map(|i| {
            let updates: Vec<_> = i
                .timeline
                .iter()
                .enumerate()
                .rev()
                .filter_map(|(n, e)| match &e.event {
                    TimelineEvent::Update { status, note } => Some(serde_json::json!({
                        "id": format!("{}-{n}", i.id), "status": status.as_str(), "body": note,
                        "incident_id": i.id, "created_at": e.at, "updated_at": e.at, "display_at": e.at,
                        "affected_components": null,
                    })),
                    _ => None,
                })
                .collect();
            serde_json::json!({
                "id": i.id, "name": i.title, "status": statuspage_status(i), "impact": impact(i.severity),
                "created_at": i.started_at, "updated_at": i.updated_at, "started_at": i.started_at,
                "monitoring_at": null, "resolved_at": i.resolved_at, "page_id": "watchpost",
                "shortlink": format!("{page_url}/status#incident-{}", i.id),
                "incident_updates": updates,
                "components": i.service.iter().map(|s| serde_json::json!({
                    "id": component_id(s), "name": s, "status": data.components.get(s),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let maintenances: Vec<_> = data
        .maintenance
        .iter()
        .map(|w| {
            serde_json::json!({
                "id": format!("m-{}", crate::alertmanager::fingerprint(&[("name".to_owned(), w.name.clone())].into_iter().collect())),
                "name": w.name,
                "status": if w.active_at(data.now) { "in_progress" } else { "scheduled" },
                "impact": "maintenance", "scheduled_for": w.starts_at, "scheduled_until": w.ends_at,
                "created_at": w.starts_at, "updated_at": w.starts_at, "page_id": "watchpost",
                "incident_updates": [], "components": w.service.iter().map(|s| serde_json::json!({"id": component_id(s), "name": s})).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "page": {
            "id": "watchpost", "name": config.status_page_name, "url": page_url,
            "time_zone": "Etc/UTC", "updated_at": data.now,
        },
        "status": { "indicator": indicator, "description": description },
        "components": components,
        "incidents": incidents,
        "scheduled_maintenances": maintenances,
    })
}

#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/status/summary.json", tag = "incidents",
    responses((status = 200, description = "Statuspage-compatible summary"))
))]
pub(crate) async fn summary_json(
    State(service): State<IncidentService>,
    request: axum::extract::Request,
) -> Response {
    match load(&service).await {
        Ok(data) => (
            [(header::CACHE_CONTROL, "public, max-age=15")],
            Json(summary(&data, &service)),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status summary unavailable");
            crate::http::problem_response(
                Problem::service_unavailable("status is unavailable; retry"),
                request.extensions(),
            )
        }
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:60rem;margin:0 auto;padding:1rem;color:#1b1b1b;background:#fff;line-height:1.5}\
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem}\
.banner{padding:1rem;border-radius:.4rem;font-weight:600;border:2px solid}\
.none{background:#e6f4ea;border-color:#137333}.minor{background:#fef7e0;border-color:#8a5a00}\
.critical,.major{background:#fce8e6;border-color:#a50e0e}.maintenance{background:#e8f0fe;border-color:#174ea6}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ccc}\
.st-operational{color:#137333}.st-degraded_performance{color:#8a5a00}.st-major_outage,.st-partial_outage{color:#a50e0e}.st-under_maintenance{color:#174ea6}\
.days{display:flex;gap:1px;flex-wrap:wrap;padding:0;list-style:none}.days li{width:.5rem;height:2rem;background:#34a853}\
.days li.warn{background:#f9ab00}.days li.crit{background:#d93025}\
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}\
@media (prefers-color-scheme:dark){body{background:#121212;color:#eee}th,td{border-color:#444}}";

/// Renders the HTML page.
pub fn render_html(data: &StatusData, title: &str, refresh_seconds: u32) -> String {
    let (indicator, description) = data.indicator();
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{refresh_seconds}\">\
         <title>{t}</title><style>{CSS}</style></head><body>\
         <header><h1>{t}</h1></header><main>\
         <section aria-labelledby=\"overall\"><h2 id=\"overall\" class=\"visually-hidden\">Overall status</h2>\
         <p class=\"banner {indicator}\" role=\"status\" id=\"overall-status\" data-indicator=\"{indicator}\">{description}</p></section>",
        t = escape(title),
    );
    h.push_str("<section aria-labelledby=\"components\"><h2 id=\"components\">Components</h2>");
    if data.components.is_empty() {
        h.push_str("<p>No components reported yet.</p>");
    } else {
        h.push_str("<table><caption class=\"visually-hidden\">Component status</caption><thead><tr><th scope=\"col\">Component</th><th scope=\"col\">Status</th></tr></thead><tbody>");
        for (name, status) in &data.components {
            let code = serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr data-component=\"{n}\"><th scope=\"row\">{n}</th><td class=\"st-{code}\" data-status=\"{code}\">{}</td></tr>",
                status.label(),
                n = escape(name),
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</section><section aria-labelledby=\"open\"><h2 id=\"open\">Open incidents</h2>");
    if data.open.is_empty() {
        h.push_str("<p>No open incidents.</p>");
    }
    for i in &data.open {
        let _ = write!(
            h,
            "<article id=\"incident-{id}\" class=\"incident\" aria-labelledby=\"t-{id}\"><h3 id=\"t-{id}\">{title}</h3>\
             <p><strong>{status}</strong> · severity {sev} ({prio}){svc} · since <time datetime=\"{start}\">{start_h}</time></p>",
            id = escape(&i.id),
            title = escape(&i.title),
            status = statuspage_status(i),
            sev = i.severity,
            prio = i.priority,
            svc = i
                .service
                .as_ref()
                .map(|s| format!(" · {}", escape(s)))
                .unwrap_or_default(),
            start = i.started_at.to_rfc3339(),
            start_h = i.started_at.format("%Y-%m-%d %H:%M UTC"),
        );
        if let Some((entry, status, note)) = i.latest_update() {
            let _ = write!(
                h,
                "<p class=\"update\">Latest update ({}, <time datetime=\"{}\">{}</time>): {}</p>",
                status.as_str(),
                entry.at.to_rfc3339(),
                entry.at.format("%Y-%m-%d %H:%M UTC"),
                escape(note)
            );
        }
        h.push_str("</article>");
    }
    h.push_str("</section>");
    if !data.maintenance.is_empty() {
        h.push_str("<section aria-labelledby=\"maint\"><h2 id=\"maint\">Maintenance</h2><ul>");
        for w in &data.maintenance {
            let _ = write!(
                h,
                "<li>{} — {} to {}</li>",
                escape(&w.name),
                w.starts_at.format("%Y-%m-%d %H:%M UTC"),
                w.ends_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        h.push_str("</ul></section>");
    }
    // 90 days: one cell per day, worst severity that day; the same facts as text for screen readers.
    let today = data.now.date_naive();
    let mut worst: HashMap<chrono::NaiveDate, Severity> = HashMap::new();
    for i in &data.history {
        let d = i.started_at.date_naive();
        let e = worst.entry(d).or_insert(i.severity);
        *e = (*e).max(i.severity);
    }
    let _ = write!(
        h,
        "<section aria-labelledby=\"hist\"><h2 id=\"hist\">Past {HISTORY_DAYS} days</h2><ul class=\"days\" aria-hidden=\"true\">"
    );
    for back in (0..HISTORY_DAYS).rev() {
        let d = today - Duration::days(back);
        let (class, what) = match worst.get(&d) {
            Some(Severity::Critical) => ("crit", "critical incident"),
            Some(Severity::Warning) => ("warn", "warning incident"),
            Some(Severity::Info) => ("", "informational incident"),
            None => ("", "no incidents"),
        };
        let _ = write!(h, "<li class=\"{class}\" title=\"{d}: {what}\"></li>");
    }
    h.push_str("</ul>");
    if data.history.is_empty() {
        let _ = write!(h, "<p>No incidents in the past {HISTORY_DAYS} days.</p>");
    } else {
        h.push_str("<table><caption class=\"visually-hidden\">Incident history</caption><thead><tr><th scope=\"col\">Started</th><th scope=\"col\">Incident</th><th scope=\"col\">Severity</th><th scope=\"col\">Status</th><th scope=\"col\">Duration</th></tr></thead><tbody>");
        for i in &data.history {
            let duration = i
                .time_to_resolve_seconds
                .map(|s| format!("{}h {}m", s / 3600, (s % 3600) / 60))
                .unwrap_or_else(|| "ongoing".to_owned());
            let _ = write!(
                h,
                "<tr><td><time datetime=\"{}\">{}</time></td><td>{}</td><td>{}</td><td>{}</td><td>{duration}</td></tr>",
                i.started_at.to_rfc3339(),
                i.started_at.format("%Y-%m-%d %H:%M"),
                escape(&i.title),
                i.severity,
                i.status.as_str()
            );
        }
        h.push_str("</tbody></table>");
    }
    let _ = write!(
        h,
        "</section></main><footer><p>Updated <time datetime=\"{}\">{}</time>; this page refreshes every {refresh_seconds} seconds. \
         Machine-readable: <a href=\"status/summary.json\">summary.json</a>.</p></footer></body></html>",
        data.now.to_rfc3339(),
        data.now.format("%Y-%m-%d %H:%M:%S UTC")
    );
    h
}

#[cfg_attr(feature = "openapi", utoipa::path(
    get, path = "/status", tag = "incidents",
    responses((status = 200, description = "status page", content_type = "text/html"))
))]
pub(crate) async fn status_html(
    State(service): State<IncidentService>,
    request: axum::extract::Request,
) -> Response {
    match load(&service).await {
        Ok(data) => {
            let config = service.config();
            (
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "public, max-age=15"),
                    (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"),
                ],
                render_html(&data, &config.status_page_name, config.status_refresh_seconds),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "status page unavailable");
            crate::http::problem_response(
                Problem::service_unavailable("status is unavailable; retry"),
                request.extensions(),
            )
        }
    }
}
