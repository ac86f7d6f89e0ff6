-- Files attached to messages (website visitors' uploads). The bytes live in the database so
-- one backup holds everything; the metadata a message shows is copied into
-- messages.attachments_json so a thread is read without a join.
CREATE TABLE attachments (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    channel_account_id TEXT,
    -- The uploader; a visitor can attach only their own uploads.
    customer_id TEXT,
    message_id TEXT,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    data BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX attachments_customer ON attachments (workspace_id, customer_id, message_id);

ALTER TABLE messages ADD COLUMN attachments_json TEXT NOT NULL DEFAULT '[]';
