-- Agents' presence (online / busy / offline, kept alive by heartbeats) and their capacity,
-- for round-robin assignment of new conversations.
CREATE TABLE agent_presence (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    status TEXT NOT NULL,
    capacity BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    last_assigned_at BIGINT,
    PRIMARY KEY (workspace_id, user_id)
);
