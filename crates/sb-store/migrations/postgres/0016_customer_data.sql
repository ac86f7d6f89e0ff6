-- Customer data: Segment-compatible event sources (write keys stored hashed), the raw batches
-- they send (stored before the 200, deleted once processed), the events on each customer's
-- timeline (de-duplicated on messageId), traits with their source and time, consent proof,
-- erasure tombstones, loyalty membership, and what an automatic merge moved.
CREATE TABLE event_sources (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    name TEXT NOT NULL,
    write_key_digest TEXT NOT NULL UNIQUE,
    events_per_second BIGINT NOT NULL,
    disabled BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX event_sources_workspace ON event_sources (workspace_id, id);

-- Time-ordered ids: the batch queue is read in arrival order and its index keys arrive in order.
CREATE TABLE event_batches (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    source_id TEXT NOT NULL REFERENCES event_sources (id),
    received_at BIGINT NOT NULL,
    events BYTEA NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);

CREATE TABLE events (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    source_id TEXT,
    message_id TEXT NOT NULL,
    -- track, identify, page, screen, group, alias
    type TEXT NOT NULL,
    -- The event name (track) or the page/screen name.
    name TEXT,
    -- commerce for the e-commerce spec's events, else the type's family (track, page, …).
    category TEXT NOT NULL,
    customer_id TEXT,
    user_id TEXT,
    anonymous_id TEXT,
    -- Skew-corrected event time, and what the client said.
    ts BIGINT NOT NULL,
    original_ts BIGINT,
    sent_at BIGINT,
    received_at BIGINT NOT NULL,
    properties_json TEXT NOT NULL,
    traits_json TEXT NOT NULL,
    context_json TEXT NOT NULL,
    integrations_json TEXT NOT NULL,
    UNIQUE (workspace_id, message_id)
);
CREATE INDEX events_timeline ON events (workspace_id, customer_id, ts, id);

CREATE TABLE customer_traits (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    customer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value_json TEXT NOT NULL,
    -- segment:<source id>, agent, widget, …
    source TEXT NOT NULL,
    event_id TEXT,
    at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, customer_id, name)
);

-- Proof of each consent statement: the text shown, the IP, the event or actor that made it.
ALTER TABLE consent_events ADD COLUMN proof_json TEXT NOT NULL DEFAULT '{}';

-- An erased customer stays as a tombstone row so references hold; its data is gone.
ALTER TABLE customers ADD COLUMN erased_at BIGINT;
-- Hashes of an erased customer's identifiers: events carrying them are not stored again.
CREATE TABLE erased_identifiers (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    digest TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, digest)
);

CREATE TABLE loyalty_members (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    customer_id TEXT NOT NULL,
    loyalty_id TEXT NOT NULL,
    incentive TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, customer_id),
    UNIQUE (workspace_id, loyalty_id)
);

-- manual (an agent) or the identity rule that merged automatically, with its evidence; the
-- events and orders that moved; both sides' traits and consents before, for undo.
ALTER TABLE customer_merges ADD COLUMN rule TEXT NOT NULL DEFAULT 'manual';
ALTER TABLE customer_merges ADD COLUMN evidence_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE customer_merges ADD COLUMN moved_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE customer_merges ADD COLUMN snapshot_json TEXT NOT NULL DEFAULT '{}';
