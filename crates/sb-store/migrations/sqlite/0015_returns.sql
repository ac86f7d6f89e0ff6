-- Returns received at any location that accepts them, each line disposed of there, with
-- the refund recorded.
CREATE TABLE returns (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    order_id TEXT NOT NULL REFERENCES orders (id),
    customer_id TEXT NOT NULL,
    location_id TEXT NOT NULL REFERENCES locations (id),
    idempotency_key TEXT NOT NULL,
    reason TEXT NOT NULL,
    refund_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, idempotency_key)
);

CREATE TABLE return_lines (
    return_id TEXT NOT NULL REFERENCES returns (id),
    variant_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    -- restock | damaged | not_restocked
    disposition TEXT NOT NULL,
    refund_minor BIGINT NOT NULL,
    PRIMARY KEY (return_id, variant_id, disposition)
);
