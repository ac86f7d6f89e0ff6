-- Carts that belong to the customer: one active cart per customer, seen from every device;
-- a guest cart (anonymous) merges into it when the shopper signs in.
CREATE TABLE carts (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    customer_id TEXT,
    anonymous_id TEXT,
    channel TEXT NOT NULL,
    currency TEXT NOT NULL,
    -- active, merged, converted, abandoned
    status TEXT NOT NULL,
    merged_into TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX carts_one_active_per_customer ON carts (workspace_id, customer_id)
    WHERE status = 'active' AND customer_id IS NOT NULL;

CREATE TABLE cart_lines (
    cart_id TEXT NOT NULL REFERENCES carts (id),
    variant_id TEXT NOT NULL REFERENCES variants (id),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    -- The price when added, to tell the shopper when it changed.
    unit_price_minor BIGINT NOT NULL,
    added_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (cart_id, variant_id)
);
