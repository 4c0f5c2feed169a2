//! watchpost-incident in the server: the store on the configured backend, the Alertmanager webhook
//! and incident API, the status page, the notification outbox worker with the configured channels,
//! optional reconciliation from Alertmanager, every incident mutation in the audit trail, and
//! `traceparent` / `X-Correlation-ID` on outgoing notifications.

use std::sync::Arc;
use std::time::Duration;

use watchpost_audit::{Action, Actor, Auditor, NewEvent, Outcome, OutcomeResult};
use watchpost_core::{CorrelationId, RequestContext, RequestId, SharedClock, SpanId, TraceId};
use watchpost_incident::model::Channel;
use watchpost_incident::notify::{
    HeaderHook, Notifier, PagerDutyNotifier, SlackNotifier, SmtpNotifier, WebhookNotifier,
};
use watchpost_incident::store::{
    MemoryStore, SharedStore, postgres::PostgresStore, sqlite::SqliteStore,
};
use watchpost_incident::worker::{OutboxWorker, OutboxWorkerConfig, OutboxWorkerHandle};
use watchpost_incident::{
    IncidentConfig, IncidentError, IncidentMutation, IncidentService, MutationHook,
};

use crate::config::Config;
use crate::store::Stores;

/// The incident store on the opened backend.
pub fn store(stores: &Stores) -> SharedStore {
    if let Some(pool) = &stores.postgres {
        Arc::new(PostgresStore::new(pool.clone()))
    } else if let Some(pool) = &stores.sqlite {
        Arc::new(SqliteStore::new(pool.clone()))
    } else {
        Arc::new(MemoryStore::new())
    }
}

/// The notifiers the configuration enables.
pub fn notifiers(config: &Config) -> Result<Vec<Arc<dyn Notifier>>, IncidentError> {
    let s = &config.incident;
    let mut all: Vec<Arc<dyn Notifier>> = Vec::new();
    if let Some(url) = &s.slack_webhook_url {
        all.push(Arc::new(SlackNotifier::new(
            url.clone(),
            s.public_url.clone(),
        )));
    }
    if let Some(key) = &s.pagerduty_routing_key {
        all.push(Arc::new(PagerDutyNotifier::new(
            key.clone(),
            s.public_url.clone(),
        )));
    }
    if let Some((url, from, to)) = &s.smtp {
        all.push(Arc::new(SmtpNotifier::new(
            url,
            from,
            to,
            s.public_url.clone(),
        )?));
    }
    if let Some((url, secret)) = &s.webhook {
        all.push(Arc::new(WebhookNotifier::new(
            url.clone(),
            secret.as_bytes().to_vec(),
        )));
    }
    Ok(all)
}

fn audit_mutation(auditor: &Auditor, m: &IncidentMutation) {
    let action = match m.action {
        "incident.acknowledge" => Action::IncidentAcknowledged,
        "incident.resolve" => Action::IncidentResolved,
        "incident.create" => Action::Create,
        "incident.update" => Action::Update,
        other => Action::Custom(other.to_owned()),
    };
    let mut event = NewEvent::new(action);
    event.resource_type = Some("incident".to_owned());
    event.resource_id = m.incident_id.clone();
    if let Some(p) = &m.principal {
        event.actor = Actor {
            api_key_id: Some(p.key_id.to_string()),
            key_name: Some(p.key_name.to_string()),
            tenant_id: p.tenant_id.as_deref().map(str::to_owned),
            role: Some(p.role),
        };
    }
    if let Some(ctx) = &m.context {
        event.request_id = Some(ctx.request_id.to_string());
        event.correlation_id = Some(ctx.correlation_id.to_string());
        event.trace_id = ctx.trace_id.map(|t| t.to_string());
    }
    event.outcome = Outcome {
        result: if m.status < 400 {
            OutcomeResult::Success
        } else {
            OutcomeResult::Failure
        },
        status: Some(m.status),
    };
    if let Err(e) = auditor.record_detached(event) {
        tracing::warn!(error = %e, "could not audit an incident change");
    }
}

/// `traceparent` and `X-Correlation-ID` for a notification, from the request that caused it.
fn origin_headers(n: &watchpost_incident::outbox::Notification) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    let Some(origin) = &n.origin else {
        return headers;
    };
    let request_id = origin
        .request_id
        .as_deref()
        .and_then(|r| RequestId::parse(r).ok());
    let Some(request_id) = request_id else {
        return headers;
    };
    let correlation_id = origin
        .correlation_id
        .as_deref()
        .and_then(|c| CorrelationId::parse(c).ok())
        .unwrap_or_else(|| CorrelationId::from(&request_id));
    let mut ctx = RequestContext::with_ids(request_id, correlation_id);
    if let (Some(t), Some(s)) = (
        origin.trace_id.as_deref().and_then(TraceId::from_hex),
        origin.span_id.as_deref().and_then(SpanId::from_hex),
    ) {
        ctx = ctx.with_trace(t, s, origin.sampled);
    }
    watchpost_correlation::inject_headers(&ctx, &mut headers);
    headers
}

/// The incident service and its notifiers (the worker is started by [`start_worker`]).
pub fn service(
    config: &Config,
    stores: &Stores,
    clock: SharedClock,
    auditor: &Auditor,
    notifiers: &[Arc<dyn Notifier>],
) -> IncidentService {
    let s = &config.incident;
    let mut incident_config = IncidentConfig {
        alertmanager_token: s.alertmanager_token.clone(),
        public_url: s.public_url.clone(),
        outbox: worker_config(config),
        ..IncidentConfig::default()
    };
    if let Some(name) = &s.status_page_name {
        incident_config.status_page_name = name.clone();
    }
    // The generic webhook, when configured, hears about every severity; the builder then routes
    // only to channels that exist (rows for absent channels would fail forever).
    let channels: Vec<_> = notifiers.iter().map(|n| n.channel()).collect();
    if channels.contains(&Channel::Webhook) {
        for routed in incident_config.policy.routing.routes.values_mut() {
            routed.push(Channel::Webhook);
        }
    }
    let auditor = auditor.clone();
    let hook: MutationHook = Arc::new(move |m: &IncidentMutation| audit_mutation(&auditor, m));
    IncidentService::builder(store(stores))
        .config(incident_config)
        .channels(&channels)
        .clock(clock)
        .on_mutation(hook)
        .build()
}

/// The worker settings: defaults, with the lease and poll interval the configuration sets.
pub fn worker_config(config: &Config) -> OutboxWorkerConfig {
    let mut worker = OutboxWorkerConfig::default();
    if let Some(lease) = config.incident.outbox_lease {
        worker.lease = lease;
    }
    if let Some(poll) = config.incident.outbox_poll_interval {
        worker.poll_interval = poll;
    }
    worker
}

/// Starts the outbox worker with `notifiers` and the worker settings [`service`] put in the
/// service's configuration.
pub fn start_worker(
    service: &IncidentService,
    notifiers: Vec<Arc<dyn Notifier>>,
) -> OutboxWorkerHandle {
    let hook: HeaderHook = Arc::new(origin_headers);
    let mut worker =
        OutboxWorker::new(service.clone(), service.config().outbox.clone()).header_hook(hook);
    for n in notifiers {
        worker = worker.notifier(n);
    }
    worker.spawn()
}

/// Starts reconciliation from Alertmanager when `WATCHPOST_ALERTMANAGER_URL` is set.
pub fn start_reconciler(
    config: &Config,
    service: &IncidentService,
    stop: tokio_util::sync::CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let url = config.incident.alertmanager_url.as_ref()?;
    Some(
        watchpost_incident::reconcile::Reconciler::new(service.clone(), url.clone())
            .spawn(Duration::from_secs(60), stop),
    )
}
