-- Canned responses: a workspace's shared library of replies an agent inserts into the composer
-- by short code (`/hours`). One short code per workspace.
CREATE TABLE canned_responses (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    short_code TEXT NOT NULL,
    content TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, short_code)
);
