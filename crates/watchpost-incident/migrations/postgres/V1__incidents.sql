-- Incidents (the JSON document holds alerts and timeline; the columns serve filters and constraints).
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    incident_key TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    service TEXT,
    started_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    doc JSONB NOT NULL
);
-- At most one open incident per key: the constraint that makes deduplication hold across writers.
CREATE UNIQUE INDEX incidents_one_open_per_key ON incidents (incident_key) WHERE status <> 'resolved';
CREATE INDEX incidents_by_key ON incidents (incident_key, id);
CREATE INDEX incidents_by_start ON incidents (started_ms DESC, id DESC);

-- One row per incident key, locked by writers touching that key.
CREATE TABLE incident_keys (incident_key TEXT PRIMARY KEY);

-- Alert events already applied: (fingerprint, status, startsAt, endsAt) digests.
CREATE TABLE incident_alert_events (
    event_key TEXT PRIMARY KEY,
    received_ms BIGINT NOT NULL
);

-- Alerts that opened no incident (below the opening severity).
CREATE TABLE incident_alerts (
    fingerprint TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    doc JSONB NOT NULL
);

-- The notification outbox, written in the same transaction as the incident change.
CREATE TABLE incident_outbox (
    id TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    created_ms BIGINT NOT NULL,
    doc JSONB NOT NULL,
    UNIQUE (incident_id, revision, channel)
);
CREATE INDEX incident_outbox_due ON incident_outbox (state, next_attempt_ms);
