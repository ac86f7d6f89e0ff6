-- Merging customers by hand, reversibly: the merge records exactly which identities and
-- messages moved, so undoing it puts back each side's identities, messages and conversation.
ALTER TABLE customers ADD COLUMN merged_into TEXT;
ALTER TABLE conversations ADD COLUMN merged_into TEXT;

CREATE TABLE customer_merges (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    target_customer_id TEXT NOT NULL REFERENCES customers (id),
    source_customer_id TEXT NOT NULL REFERENCES customers (id),
    target_conversation_id TEXT,
    source_conversation_id TEXT,
    identity_ids_json TEXT NOT NULL,
    message_ids_json TEXT NOT NULL,
    source_unread BIGINT NOT NULL,
    actor_id TEXT,
    merged_at BIGINT NOT NULL,
    undone_at BIGINT
);
CREATE INDEX customer_merges_workspace ON customer_merges (workspace_id, id);
