-- An agent's reply or note may carry the client's idempotency key: a retry after a lost
-- answer finds the message it already made instead of sending twice.
ALTER TABLE messages ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX messages_idempotency ON messages (workspace_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
