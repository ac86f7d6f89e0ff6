-- Live events for agents' streams. `seq` is per workspace and taken from a counter row that
-- the writing transaction holds until it commits, so commit order is sequence order and a
-- reconnecting stream can replay "everything after seq N" without gaps.
CREATE TABLE event_counters (
    workspace_id TEXT NOT NULL PRIMARY KEY,
    seq BIGINT NOT NULL
);

CREATE TABLE live_events (
    workspace_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    kind TEXT NOT NULL,
    conversation_id TEXT,
    payload_json TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, seq)
);
