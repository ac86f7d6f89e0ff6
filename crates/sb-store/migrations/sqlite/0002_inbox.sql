-- The unified inbox: channel accounts, customers and their identities, one conversation per
-- customer, messages from every channel, raw inbound requests stored before acknowledgement.
CREATE TABLE channel_accounts (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    channel TEXT NOT NULL,
    name TEXT NOT NULL,
    -- Non-secret settings (JSON), returned by the API.
    settings_json TEXT NOT NULL,
    -- Secrets (JSON), never returned after creation.
    secrets_json TEXT NOT NULL,
    disabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX channel_accounts_workspace ON channel_accounts (workspace_id, id);

CREATE TABLE customers (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name TEXT,
    email TEXT,
    phone TEXT,
    attributes_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX customers_workspace ON customers (workspace_id, id);

-- kind: email, phone, api (and later whatsapp, telegram, messenger_psid, …).
-- scope: '' for global identifiers (phone, e-mail); the channel account id for scoped ones.
CREATE TABLE identities (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    customer_id TEXT NOT NULL REFERENCES customers (id),
    kind TEXT NOT NULL,
    scope TEXT NOT NULL,
    value TEXT NOT NULL,
    verified BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, kind, scope, value)
);
CREATE INDEX identities_customer ON identities (customer_id);

CREATE TABLE conversations (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    customer_id TEXT NOT NULL REFERENCES customers (id),
    status TEXT NOT NULL,
    snoozed_until BIGINT,
    assignee_id TEXT,
    team TEXT,
    unread_count BIGINT NOT NULL,
    last_message_at BIGINT NOT NULL,
    last_inbound_at BIGINT,
    last_inbound_account_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, customer_id)
);
CREATE INDEX conversations_list ON conversations (workspace_id, last_message_at, id);

CREATE TABLE conversation_labels (
    workspace_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    label TEXT NOT NULL,
    PRIMARY KEY (conversation_id, label)
);

-- direction: inbound, outbound, note. status (outbound): queued, sent, delivered, read, failed.
CREATE TABLE messages (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    customer_id TEXT NOT NULL,
    channel_account_id TEXT,
    channel TEXT,
    direction TEXT NOT NULL,
    author_kind TEXT NOT NULL,
    author_id TEXT,
    body TEXT NOT NULL,
    provider_message_id TEXT,
    status TEXT NOT NULL,
    error_code TEXT,
    error_message TEXT,
    sent_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (channel_account_id, provider_message_id)
);
CREATE INDEX messages_thread ON messages (conversation_id, sent_at, id);

-- Raw inbound requests, stored before the provider is answered. `dedupe_key` is the
-- provider's id for the request (message id), scoped by the channel account.
CREATE TABLE inbound_requests (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    channel_account_id TEXT NOT NULL REFERENCES channel_accounts (id),
    dedupe_key TEXT NOT NULL,
    signature_digest TEXT NOT NULL,
    headers_json TEXT NOT NULL,
    body BLOB NOT NULL,
    received_at BIGINT NOT NULL,
    processed_at BIGINT,
    UNIQUE (channel_account_id, dedupe_key)
);
CREATE INDEX inbound_requests_signature ON inbound_requests (channel_account_id, signature_digest);
