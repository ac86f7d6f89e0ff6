-- Inbound requests are processed in batches straight from this table (it is the queue), not
-- one job each: unprocessed rows are found by a partial index, a failing request counts its
-- attempts and keeps its last error, and a replay (the same signed bytes again) is refused
-- by a unique index instead of a lookup before every insert.
ALTER TABLE inbound_requests ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbound_requests ADD COLUMN last_error TEXT;
DROP INDEX inbound_requests_signature;
CREATE UNIQUE INDEX inbound_requests_signature ON inbound_requests (channel_account_id, signature_digest);
CREATE INDEX inbound_requests_unprocessed ON inbound_requests (received_at, id) WHERE processed_at IS NULL;
