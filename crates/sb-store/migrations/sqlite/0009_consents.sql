-- Consent per customer, channel and purpose (e.g. marketing on WhatsApp), as last stated by
-- the customer or their provider; each change is also kept in consent_events.
CREATE TABLE consents (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted BOOLEAN NOT NULL,
    source TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, customer_id, channel, purpose)
);

CREATE TABLE consent_events (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    purpose TEXT NOT NULL,
    granted BOOLEAN NOT NULL,
    source TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX consent_events_customer ON consent_events (workspace_id, customer_id, at);
