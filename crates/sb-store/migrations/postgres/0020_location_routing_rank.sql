-- A merchant's preference among locations that can send the same order (commerce.md §8.5):
-- lower first; it comes after "one location for everything" and "fewest shipments" and
-- before distance.
ALTER TABLE locations ADD COLUMN routing_rank INTEGER NOT NULL DEFAULT 0;
