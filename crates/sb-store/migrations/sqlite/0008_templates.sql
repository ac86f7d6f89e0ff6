-- Pre-approved message templates per channel account (WhatsApp), synced from the provider;
-- a reply outside the customer service window must use one. A message sent as a template
-- keeps the template call in messages.template_json (its body is the rendered text).
CREATE TABLE channel_templates (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    channel_account_id TEXT NOT NULL REFERENCES channel_accounts (id),
    name TEXT NOT NULL,
    language TEXT NOT NULL,
    category TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    parameter_count INTEGER NOT NULL,
    synced_at BIGINT NOT NULL,
    UNIQUE (channel_account_id, name, language)
);

ALTER TABLE messages ADD COLUMN template_json TEXT;
