-- Fulfilment orders (commerce.md §3.4, §8.2): each order is sent or handed over from one or
-- more locations, one fulfilment per location with the units of each inventory item it
-- sends. A ship order no single location can cover is split across several ("fewest
-- shipments"); `orders.location_id` stays the first one's location.
CREATE TABLE order_fulfillments (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    order_id TEXT NOT NULL REFERENCES orders (id),
    location_id TEXT NOT NULL REFERENCES locations (id),
    position BIGINT NOT NULL,
    -- placed, shipped, picked_up, canceled
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (order_id, position)
);
CREATE INDEX order_fulfillments_capacity ON order_fulfillments (workspace_id, location_id, created_at);

CREATE TABLE order_fulfillment_lines (
    fulfillment_id TEXT NOT NULL REFERENCES order_fulfillments (id),
    item_id TEXT NOT NULL REFERENCES inventory_items (id),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (fulfillment_id, item_id)
);

-- The orders placed before: one fulfilment each, at the order's location.
INSERT INTO order_fulfillments (id, workspace_id, order_id, location_id, position, status, created_at, updated_at)
SELECT id, workspace_id, id, location_id, 0,
       CASE status WHEN 'ready_for_pickup' THEN 'placed' ELSE status END, placed_at, updated_at
FROM orders;
INSERT INTO order_fulfillment_lines (fulfillment_id, item_id, quantity)
SELECT ol.order_id, vc.item_id, SUM(vc.quantity * ol.quantity)
FROM order_lines ol JOIN variant_components vc ON vc.variant_id = ol.variant_id
GROUP BY ol.order_id, vc.item_id;

-- Stock moving between locations: on the way it is off the sender's shelf and `incoming`
-- at the receiver. A pickup order at a store short of stock may be sourced by one
-- (`order_id`); its units are committed to the order when they arrive.
-- Per line: qty_sent = qty_received + qty_lost + qty_returned (a cancelled transfer's units
-- go back to the sender).
CREATE TABLE transfers (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    idempotency_key TEXT NOT NULL,
    from_location_id TEXT NOT NULL REFERENCES locations (id),
    to_location_id TEXT NOT NULL REFERENCES locations (id),
    order_id TEXT REFERENCES orders (id),
    -- in_transit, received, canceled
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, idempotency_key),
    CHECK (from_location_id <> to_location_id)
);
CREATE INDEX transfers_order ON transfers (workspace_id, order_id);
CREATE INDEX transfers_to ON transfers (workspace_id, to_location_id, status);

CREATE TABLE transfer_lines (
    transfer_id TEXT NOT NULL REFERENCES transfers (id),
    item_id TEXT NOT NULL REFERENCES inventory_items (id),
    qty_sent BIGINT NOT NULL CHECK (qty_sent > 0),
    qty_received BIGINT NOT NULL CHECK (qty_received >= 0),
    qty_lost BIGINT NOT NULL CHECK (qty_lost >= 0),
    qty_returned BIGINT NOT NULL CHECK (qty_returned >= 0),
    PRIMARY KEY (transfer_id, item_id),
    CHECK (qty_received + qty_lost + qty_returned <= qty_sent)
);
