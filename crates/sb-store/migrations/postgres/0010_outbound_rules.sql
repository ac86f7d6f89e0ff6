-- Why a message is sent (a conversation reply, a transactional notice or marketing, which
-- needs consent), and channel details the thread needs later (e-mail subject and ids).
ALTER TABLE messages ADD COLUMN purpose TEXT NOT NULL DEFAULT 'conversation';
ALTER TABLE messages ADD COLUMN meta_json TEXT;

-- Addresses that must not get marketing on a channel: hard bounces, complaints, carrier
-- opt-outs. Kept per address, as the address (not the customer) is what failed.
CREATE TABLE suppressions (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    channel TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (workspace_id, channel, address)
);
