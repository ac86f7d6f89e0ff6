-- Foundation: tenancy, access, audit, durable jobs and timers.
-- Integers are 64-bit; times are epoch milliseconds; ids are UUIDv7 text; JSON is text.
CREATE TABLE workspaces (
    id TEXT NOT NULL PRIMARY KEY,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    email TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_owner BOOLEAN NOT NULL,
    disabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX users_workspace ON users (workspace_id, id);

CREATE TABLE sessions (
    token_hash TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE api_tokens (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_workspace ON api_tokens (workspace_id, id);

CREATE TABLE audit_log (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    action TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id TEXT,
    before_json TEXT,
    after_json TEXT,
    ip TEXT,
    request_id TEXT,
    at BIGINT NOT NULL
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id);

CREATE TABLE jobs (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    run_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    dedupe_key TEXT UNIQUE,
    concurrency_key TEXT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX jobs_ready ON jobs (queue, state, run_at);
CREATE INDEX jobs_concurrency ON jobs (concurrency_key, lease_until);
CREATE INDEX jobs_workspace_state ON jobs (workspace_id, state, id);

CREATE TABLE timers (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT,
    timer_key TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
-- Covering index: the start-up rebuild of the in-memory timer index reads only this.
CREATE INDEX timers_due ON timers (due_at, id);
