-- Outgoing webhooks (Standard Webhooks). Events come from the workspace's event log
-- (`live_events`, written in the transaction of each change); a dispatcher turns each event
-- into one message per workspace and one delivery per subscribed endpoint, and moves the
-- workspace's cursor in the same transaction, so each event fans out exactly once.
CREATE TABLE webhook_endpoints (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    -- JSON array of event type names from the catalogue.
    event_types_json TEXT NOT NULL,
    -- Deliver one at a time in event order (head-of-line blocking while one retries).
    ordered BOOLEAN NOT NULL,
    -- `enabled`, `disabled` (by an admin) or `failing` (disabled after days of failures or a 410).
    status TEXT NOT NULL,
    disabled_reason TEXT,
    -- Start of the current run of failures; cleared by any success.
    first_failure_at BIGINT,
    secret TEXT NOT NULL,
    -- During a rotation the old secret signs too, until `previous_secret_until`.
    previous_secret TEXT,
    previous_secret_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_endpoints_workspace ON webhook_endpoints (workspace_id, created_at);

-- How far the dispatcher has read each workspace's event log.
CREATE TABLE webhook_cursors (
    workspace_id TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL
);

-- One event as sent: the exact body that is signed, the same for every endpoint and retry.
-- `id` is the `webhook-id` header and the body's `id`: what a receiver de-duplicates on.
CREATE TABLE webhook_messages (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    seq BIGINT,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX webhook_messages_event ON webhook_messages (workspace_id, seq);
CREATE INDEX webhook_messages_time ON webhook_messages (workspace_id, created_at);

-- One message to one endpoint: `pending` until it succeeds or its retries are exhausted.
CREATE TABLE webhook_deliveries (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    -- The event's place in the workspace's log (ordering for ordered endpoints).
    seq BIGINT,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    -- Held while a worker has the request in flight.
    lease_until BIGINT,
    -- The next attempt was asked for by a person (resend or replay).
    manual BOOLEAN NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_pair ON webhook_deliveries (message_id, endpoint_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status, seq);
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, created_at);

-- Every request made: what was sent, what came back, how long it took.
CREATE TABLE webhook_attempts (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    url TEXT NOT NULL,
    -- The `webhook-timestamp` sent (seconds).
    signed_at BIGINT NOT NULL,
    -- `scheduled` or `manual`.
    trigger_kind TEXT NOT NULL,
    response_status INTEGER,
    response_excerpt TEXT,
    error TEXT,
    latency_ms BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, at);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, at);
