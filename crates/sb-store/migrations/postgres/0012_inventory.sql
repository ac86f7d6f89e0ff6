-- Commerce: where stock lives, what is sold, and the inventory ledger (commerce.md §8.2).

CREATE TABLE locations (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    code TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    lat DOUBLE PRECISION,
    lng DOUBLE PRECISION,
    timezone TEXT NOT NULL,
    can_ship BOOLEAN NOT NULL,
    can_pickup BOOLEAN NOT NULL,
    accepts_returns BOOLEAN NOT NULL,
    pickup_prep_minutes BIGINT NOT NULL,
    pickup_hold_days BIGINT NOT NULL,
    daily_capacity BIGINT,
    active BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (workspace_id, code)
);

CREATE TABLE products (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- What a customer buys; its stock is one inventory item of the same SKU, or several (a kit).
CREATE TABLE variants (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    product_id TEXT NOT NULL REFERENCES products (id),
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    price_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, sku)
);

CREATE TABLE inventory_items (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    sku TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, sku)
);

CREATE TABLE variant_components (
    variant_id TEXT NOT NULL REFERENCES variants (id),
    item_id TEXT NOT NULL REFERENCES inventory_items (id),
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (variant_id, item_id)
);

-- The buckets of each (item, location): a cache of the ledger, changed only together with
-- it, by guarded single-statement updates. The checks are the last line of defence.
CREATE TABLE inventory_balances (
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    item_id TEXT NOT NULL REFERENCES inventory_items (id),
    location_id TEXT NOT NULL REFERENCES locations (id),
    on_hand BIGINT NOT NULL,
    committed BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    damaged BIGINT NOT NULL,
    quality_control BIGINT NOT NULL,
    safety_stock BIGINT NOT NULL,
    incoming BIGINT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (item_id, location_id),
    CHECK (committed >= 0 AND reserved >= 0 AND damaged >= 0 AND quality_control >= 0
           AND safety_stock >= 0 AND incoming >= 0),
    CHECK (on_hand - committed - reserved - damaged - quality_control - safety_stock >= 0)
);
CREATE INDEX inventory_balances_location ON inventory_balances (workspace_id, location_id);

-- One row per change request: the idempotency key (the same key with another request is
-- refused), why, who, and what it was for.
CREATE TABLE inventory_groups (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    reference_type TEXT NOT NULL,
    reference_id TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (workspace_id, idempotency_key)
);

-- Append-only: corrections are new groups.
CREATE TABLE inventory_ledger (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    group_id TEXT NOT NULL REFERENCES inventory_groups (id),
    item_id TEXT NOT NULL,
    location_id TEXT NOT NULL,
    bucket TEXT NOT NULL,
    delta BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX inventory_ledger_balance ON inventory_ledger (item_id, location_id, bucket);

-- Holds during checkout: resolved once (committed, released or expired).
CREATE TABLE reservations (
    id TEXT NOT NULL PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id),
    item_id TEXT NOT NULL,
    location_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    status TEXT NOT NULL,
    owner_type TEXT NOT NULL,
    owner_id TEXT,
    expires_at BIGINT NOT NULL,
    resolved_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX reservations_due ON reservations (status, expires_at);
CREATE INDEX reservations_balance ON reservations (item_id, location_id, status);
