-- Orders from any sales channel, one per cart and per idempotency key, with the location
-- that fulfils them (a pickup store or the shipping location) and their timeline.
CREATE TABLE orders (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    number TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    cart_id TEXT,
    idempotency_key TEXT NOT NULL,
    -- ship | pickup
    fulfillment TEXT NOT NULL,
    location_id TEXT NOT NULL REFERENCES locations (id),
    -- placed, ready_for_pickup, shipped, picked_up, canceled
    status TEXT NOT NULL,
    pickup_code TEXT,
    ready_at BIGINT,
    pickup_deadline BIGINT,
    total_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    placed_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, idempotency_key),
    UNIQUE (workspace_id, number)
);
CREATE UNIQUE INDEX orders_one_per_cart ON orders (cart_id) WHERE cart_id IS NOT NULL;
CREATE INDEX orders_customer ON orders (workspace_id, customer_id, placed_at);
CREATE INDEX orders_pickup_due ON orders (status, pickup_deadline);

CREATE TABLE order_lines (
    order_id TEXT NOT NULL REFERENCES orders (id),
    variant_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL,
    PRIMARY KEY (order_id, variant_id)
);

-- Each step, under the e-commerce spec's event names, for the customer's timeline.
CREATE TABLE order_events (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    order_id TEXT NOT NULL REFERENCES orders (id),
    customer_id TEXT NOT NULL,
    name TEXT NOT NULL,
    properties_json TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX order_events_customer ON order_events (workspace_id, customer_id, at);
