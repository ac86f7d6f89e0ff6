-- Short links in automated SMS: /l/{token} redirects to the URL registered for that one
-- delivery, so a text stays short and a click is counted; nothing else can be reached.
CREATE TABLE links (
    token TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    url TEXT NOT NULL,
    clicks BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    last_click_at BIGINT
);
CREATE INDEX links_delivery ON links (delivery_id);
