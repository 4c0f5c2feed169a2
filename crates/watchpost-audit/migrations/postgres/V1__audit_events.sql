-- watchpost-audit: append-only, monthly-partitioned audit events and signed checkpoints (PostgreSQL).
CREATE TABLE audit_events (
    id               uuid        NOT NULL,
    stream           text        NOT NULL,
    seq              bigint      NOT NULL,
    prev_hash        text        NOT NULL,
    hash             text        NOT NULL,
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL,
    actor_api_key_id text,
    actor_key_name   text,
    tenant_id        text,
    actor_role       text,
    method           text,
    route            text,
    path             text,
    action           text        NOT NULL,
    resource_type    text,
    resource_id      text,
    outcome          text        NOT NULL,
    status           integer,
    request_id       text,
    correlation_id   text,
    trace_id         text,
    source_ip        text,
    user_agent       text,
    payload          json,
    PRIMARY KEY (id, recorded_at)
) PARTITION BY RANGE (recorded_at);

CREATE INDEX audit_events_time_brin ON audit_events USING brin (recorded_at);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, recorded_at);
CREATE INDEX audit_events_actor_time ON audit_events (actor_api_key_id, recorded_at);
CREATE INDEX audit_events_stream_seq ON audit_events (stream, seq);

CREATE TABLE audit_checkpoints (
    stream         text        NOT NULL,
    number         bigint      NOT NULL,
    from_seq       bigint      NOT NULL,
    to_seq         bigint      NOT NULL,
    head_hash      text        NOT NULL,
    prev_signature text        NOT NULL,
    created_at     timestamptz NOT NULL,
    public_key     text        NOT NULL,
    signature      text        NOT NULL,
    PRIMARY KEY (stream, number)
);

-- Append-only: triggers raise on UPDATE, DELETE and TRUNCATE, whoever asks.
CREATE FUNCTION watchpost_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'watchpost audit table % is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION watchpost_audit_refuse();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION watchpost_audit_refuse();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION watchpost_audit_refuse();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION watchpost_audit_refuse();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints FROM PUBLIC;

-- Creates the partition holding the month of `day` (with its own TRUNCATE trigger) unless it exists.
CREATE FUNCTION watchpost_audit_ensure_partition(day date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    lo   date := date_trunc('month', day)::date;
    hi   date := (date_trunc('month', day) + interval '1 month')::date;
    name text := format('audit_events_y%sm%s', to_char(lo, 'YYYY'), to_char(lo, 'MM'));
BEGIN
    IF to_regclass(name) IS NULL THEN
        EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        EXECUTE format('CREATE TRIGGER audit_partition_no_truncate BEFORE TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION watchpost_audit_refuse()', name);
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM PUBLIC', name);
    END IF;
    RETURN name;
END
$$;
