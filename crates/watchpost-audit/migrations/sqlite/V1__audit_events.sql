-- watchpost-audit: append-only audit events and signed checkpoints (SQLite).
CREATE TABLE audit_events (
    id             TEXT PRIMARY KEY NOT NULL,
    stream         TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    recorded_at    INTEGER NOT NULL, -- microseconds since the epoch
    tenant_id      TEXT,
    api_key_id     TEXT,
    action         TEXT NOT NULL,
    resource_type  TEXT,
    resource_id    TEXT,
    outcome        TEXT NOT NULL,
    correlation_id TEXT,
    body           TEXT NOT NULL    -- the whole event as JSON
);
CREATE INDEX audit_events_time ON audit_events (recorded_at, id);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, recorded_at);
CREATE INDEX audit_events_actor_time ON audit_events (api_key_id, recorded_at);
CREATE INDEX audit_events_stream_seq ON audit_events (stream, seq);

CREATE TABLE audit_checkpoints (
    stream TEXT NOT NULL,
    number INTEGER NOT NULL,
    body   TEXT NOT NULL,
    PRIMARY KEY (stream, number)
);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'watchpost audit events are append-only: UPDATE refused'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'watchpost audit events are append-only: DELETE refused'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'watchpost audit checkpoints are append-only: UPDATE refused'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'watchpost audit checkpoints are append-only: DELETE refused'); END;
