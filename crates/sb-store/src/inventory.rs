//! The inventory ledger (commerce.md §8): every quantity change is one group (idempotency
//! key, reason, actor, reference) with its ledger rows and the matching balance updates, in
//! the caller's transaction.
//!
//! Balances change only by guarded single-statement updates — the new values must keep
//! every bucket and `available` non-negative or no row changes — so there is no
//! read-modify-write and nothing to oversell under any concurrency. Rows are touched in
//! ascending (item, location) order, demand summed per row first. The same idempotency key
//! again is a replay (no effect); with a different request it is refused. [`check`]
//! recomputes every balance from the ledger.

use std::collections::BTreeMap;

use sb_core::inventory::{Balance, Bucket, Deltas, Movement};
use sb_sql::{Conn, Row, SqlError, Stmt, from_row};
use serde::Serialize;
use sha2::Digest;

use crate::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("insufficient stock of {item} at {location}: {available} available")]
    Insufficient {
        item: String,
        location: String,
        available: i64,
    },
    #[error("the count of {item} at {location} is outdated: {on_hand} on hand now")]
    CountOutdated {
        item: String,
        location: String,
        on_hand: i64,
    },
    #[error("the idempotency key was used for a different request")]
    KeyReused,
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("the reservation is already {0}")]
    AlreadyResolved(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SqlError> for InventoryError {
    fn from(e: SqlError) -> Self {
        InventoryError::Store(e.into())
    }
}

pub type Result<T, E = InventoryError> = std::result::Result<T, E>;

/// One change request.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    pub workspace_id: &'a str,
    pub idempotency_key: &'a str,
    /// `received`, `count`, `damaged`, `checkout`, `order`, `return`, `transfer`, …
    pub reason: &'a str,
    /// Who asked: `user:<id>`, `system`, …
    pub actor: &'a str,
    /// `cart`, `order`, `return`, `transfer`, `count`, `manual`, `reservation`.
    pub reference_type: &'a str,
    pub reference_id: Option<&'a str>,
    pub lines: Vec<Line>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub item_id: String,
    pub location_id: String,
    pub movement: Movement,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied {
        group_id: String,
    },
    /// The key was seen with this same request: nothing changed this time.
    Replayed {
        group_id: String,
        reference_id: Option<String>,
    },
}

impl Outcome {
    pub fn group_id(&self) -> &str {
        match self {
            Outcome::Applied { group_id } | Outcome::Replayed { group_id, .. } => group_id,
        }
    }
}

/// What makes two requests the same: the reason, the kind of reference and the lines. The
/// reference id is ours (a new reservation's or order's id), not part of the request.
fn request_hash(change: &Change<'_>) -> String {
    let canonical = serde_json::json!({
        "reason": change.reason,
        "reference": change.reference_type,
        "lines": change.lines,
    });
    hex::encode(sha2::Sha256::digest(canonical.to_string().as_bytes()))
}

/// Parameter names of the ledger rows of one balance (at most one per bucket).
const LEDGER_PARAMS: [[&str; 4]; 7] = [
    ["id0", "bucket0", "delta0", "after0"],
    ["id1", "bucket1", "delta1", "after1"],
    ["id2", "bucket2", "delta2", "after2"],
    ["id3", "bucket3", "delta3", "after3"],
    ["id4", "bucket4", "delta4", "after4"],
    ["id5", "bucket5", "delta5", "after5"],
    ["id6", "bucket6", "delta6", "after6"],
];

const BALANCE_COLUMNS: &str = "on_hand, committed, reserved, damaged, quality_control, safety_stock, incoming";

fn balance_of(row: &Row) -> Result<Balance, SqlError> {
    Ok(Balance {
        on_hand: row.get("on_hand")?,
        committed: row.get("committed")?,
        reserved: row.get("reserved")?,
        damaged: row.get("damaged")?,
        quality_control: row.get("quality_control")?,
        safety_stock: row.get("safety_stock")?,
        incoming: row.get("incoming")?,
    })
}

/// Applies a change: records the group, updates each touched balance with a guarded
/// statement and writes the ledger. On any shortfall the caller's transaction must be rolled
/// back (return the error from the `Db::write` closure).
pub fn apply(c: &mut dyn Conn, change: &Change<'_>, now: i64) -> Result<Outcome> {
    let ws = change.workspace_id;
    if change.lines.is_empty() {
        return Err(InventoryError::Invalid("a change needs at least one line".into()));
    }
    let hash = request_hash(change);
    let group_id = sb_core::new_id();
    let inserted = c.execute(
        &Stmt::new(
            "INSERT INTO inventory_groups (id, workspace_id, idempotency_key, request_hash, reason, actor,
                                           reference_type, reference_id, created_at)
             VALUES (:id, :ws, :key, :hash, :reason, :actor, :ref_type, :ref_id, :now)
             ON CONFLICT (workspace_id, idempotency_key) DO NOTHING",
        )
        .bind("id", &group_id)
        .bind("ws", ws)
        .bind("key", change.idempotency_key)
        .bind("hash", &hash)
        .bind("reason", change.reason)
        .bind("actor", change.actor)
        .bind("ref_type", change.reference_type)
        .bind("ref_id", change.reference_id)
        .bind("now", now),
    )?;
    if inserted == 0 {
        let row = c.query_one(
            &Stmt::new(
                "SELECT id, request_hash, reference_id FROM inventory_groups
                 WHERE workspace_id = :ws AND idempotency_key = :key",
            )
            .bind("ws", ws)
            .bind("key", change.idempotency_key),
        )?;
        let (existing, stored_hash): (String, String) = (row.get("id")?, row.get("request_hash")?);
        if stored_hash != hash {
            return Err(InventoryError::KeyReused);
        }
        return Ok(Outcome::Replayed {
            group_id: existing,
            reference_id: row.get("reference_id")?,
        });
    }
    // Demand summed per row, rows in one global order; a count stands alone on its row.
    let mut rows: BTreeMap<(&str, &str), (Deltas, Option<i64>)> = BTreeMap::new();
    for line in &change.lines {
        let deltas = line.movement.deltas().map_err(|e| InventoryError::Invalid(e.into()))?;
        let key = (line.item_id.as_str(), line.location_id.as_str());
        let counted = line.movement.expected_on_hand();
        if rows.contains_key(&key) && (counted.is_some() || rows[&key].1.is_some()) {
            return Err(InventoryError::Invalid(
                "a count must be the only line for its item and location".into(),
            ));
        }
        let entry = rows.entry(key).or_default();
        entry.1 = counted;
        for (bucket, delta) in deltas.iter() {
            entry.0.add(bucket, delta);
        }
    }
    for ((item, location), (deltas, expected)) in rows {
        // A count that finds what was expected changes nothing but is still compared.
        if deltas.is_empty() && expected.is_none() {
            continue;
        }
        // Why the guarded update changed nothing: a count overtaken by a movement, else a shortfall.
        let refused = |c: &mut dyn Conn| -> Result<InventoryError> {
            let now = balance(c, ws, item, location)?;
            let (item, location) = (item.to_owned(), location.to_owned());
            Ok(match expected {
                Some(e) if e != now.on_hand => InventoryError::CountOutdated {
                    item,
                    location,
                    on_hand: now.on_hand,
                },
                _ => InventoryError::Insufficient {
                    item,
                    location,
                    available: now.available(),
                },
            })
        };
        // The row usually exists: update first, and create it only for a first delivery.
        let after = match guarded_update(c, ws, item, location, &deltas, expected, now)? {
            Some(after) => after,
            None if stored_balance(c, ws, item, location)?.is_some() => return Err(refused(c)?),
            None => {
                ensure_balance_row(c, ws, item, location, now)?;
                match guarded_update(c, ws, item, location, &deltas, expected, now)? {
                    Some(after) => after,
                    None => return Err(refused(c)?),
                }
            }
        };
        // One statement for the row's ledger entries.
        let changes: Vec<(Bucket, i64)> = deltas.iter().collect();
        if changes.is_empty() {
            continue;
        }
        let values: Vec<String> = (0..changes.len())
            .map(|i| format!("(:id{i}, :ws, :group, :item, :location, :bucket{i}, :delta{i}, :after{i}, :now)"))
            .collect();
        let mut stmt = Stmt::new(format!(
            "INSERT INTO inventory_ledger (id, workspace_id, group_id, item_id, location_id, bucket, delta, balance_after, at)
             VALUES {}",
            values.join(", ")
        ))
        .bind("ws", ws)
        .bind("group", &group_id)
        .bind("item", item)
        .bind("location", location)
        .bind("now", now);
        for (i, (bucket, delta)) in changes.into_iter().enumerate() {
            let [id, bucket_name, delta_name, after_name] = LEDGER_PARAMS[i];
            stmt = stmt
                .bind(id, sb_core::new_id())
                .bind(bucket_name, bucket.as_str())
                .bind(delta_name, delta)
                .bind(after_name, after.get(bucket));
        }
        c.execute(&stmt)?;
    }
    Ok(Outcome::Applied { group_id })
}

/// A zero balance for a new (item, location), once both are known to be the workspace's.
fn ensure_balance_row(c: &mut dyn Conn, ws: &str, item: &str, location: &str, now: i64) -> Result<()> {
    let known = c.query_one(
        &Stmt::new(
            "SELECT (SELECT COUNT(*) FROM inventory_items WHERE id = :item AND workspace_id = :ws)
                  + (SELECT COUNT(*) FROM locations WHERE id = :location AND workspace_id = :ws) AS n",
        )
        .bind("item", item)
        .bind("location", location)
        .bind("ws", ws),
    )?;
    if known.get::<i64>("n")? != 2 {
        return Err(InventoryError::NotFound("inventory item or location"));
    }
    c.execute(
        &Stmt::new(
            "INSERT INTO inventory_balances (workspace_id, item_id, location_id, on_hand, committed, reserved, damaged,
                                             quality_control, safety_stock, incoming, version, updated_at)
             VALUES (:ws, :item, :location, 0, 0, 0, 0, 0, 0, 0, 0, :now)
             ON CONFLICT (item_id, location_id) DO NOTHING",
        )
        .bind("ws", ws)
        .bind("item", item)
        .bind("location", location)
        .bind("now", now),
    )?;
    Ok(())
}

/// One statement that changes the row only if the result keeps every invariant (and, for a
/// count, only while on hand is still what the counter was shown).
fn guarded_update(
    c: &mut dyn Conn,
    ws: &str,
    item: &str,
    location: &str,
    d: &Deltas,
    expected_on_hand: Option<i64>,
    now: i64,
) -> Result<Option<Balance>> {
    let compare = if expected_on_hand.is_some() {
        "AND on_hand = :expected"
    } else {
        ""
    };
    let mut stmt = Stmt::new(format!(
        "UPDATE inventory_balances SET
                on_hand = on_hand + :oh, committed = committed + :co, reserved = reserved + :re,
                damaged = damaged + :da, quality_control = quality_control + :qc, safety_stock = safety_stock + :ss,
                incoming = incoming + :inc, version = version + 1, updated_at = :now
             WHERE item_id = :item AND location_id = :location AND workspace_id = :ws
               AND committed + :co >= 0 AND reserved + :re >= 0 AND damaged + :da >= 0
               AND quality_control + :qc >= 0 AND safety_stock + :ss >= 0 AND incoming + :inc >= 0
               AND (on_hand + :oh) - (committed + :co) - (reserved + :re) - (damaged + :da)
                   - (quality_control + :qc) - (safety_stock + :ss) >= 0
               {compare}
             RETURNING {BALANCE_COLUMNS}"
    ))
    .bind("oh", d.get(Bucket::OnHand))
    .bind("co", d.get(Bucket::Committed))
    .bind("re", d.get(Bucket::Reserved))
    .bind("da", d.get(Bucket::Damaged))
    .bind("qc", d.get(Bucket::QualityControl))
    .bind("ss", d.get(Bucket::SafetyStock))
    .bind("inc", d.get(Bucket::Incoming))
    .bind("now", now)
    .bind("item", item)
    .bind("location", location)
    .bind("ws", ws);
    if let Some(expected) = expected_on_hand {
        stmt = stmt.bind("expected", expected);
    }
    let updated = c.query_opt(&stmt)?;
    Ok(match updated {
        Some(row) => Some(balance_of(&row)?),
        None => None,
    })
}

pub fn balance(c: &mut dyn Conn, ws: &str, item: &str, location: &str) -> Result<Balance> {
    Ok(stored_balance(c, ws, item, location)?.unwrap_or_default())
}

/// The balance row, when the item has ever had stock movements at the location.
fn stored_balance(c: &mut dyn Conn, ws: &str, item: &str, location: &str) -> Result<Option<Balance>> {
    let row = c.query_opt(
        &Stmt::new(format!(
            "SELECT {BALANCE_COLUMNS} FROM inventory_balances
             WHERE workspace_id = :ws AND item_id = :item AND location_id = :location"
        ))
        .bind("ws", ws)
        .bind("item", item)
        .bind("location", location),
    )?;
    Ok(match row {
        Some(row) => Some(balance_of(&row)?),
        None => None,
    })
}

/// Every location's balance of an item.
pub fn balances_of_item(c: &mut dyn Conn, ws: &str, item: &str) -> Result<Vec<(String, Balance)>> {
    let rows = c.query(
        &Stmt::new(format!(
            "SELECT location_id, {BALANCE_COLUMNS} FROM inventory_balances
             WHERE workspace_id = :ws AND item_id = :item ORDER BY location_id"
        ))
        .bind("ws", ws)
        .bind("item", item),
    )?;
    rows.iter()
        .map(|r| Ok((r.get("location_id")?, balance_of(r)?)))
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Reservation {
    pub id: String,
    pub item_id: String,
    pub location_id: String,
    pub quantity: i64,
    /// `active`, `committed`, `released` or `expired`.
    pub status: String,
    pub owner_type: String,
    pub owner_id: Option<String>,
    pub expires_at: i64,
    pub resolved_at: Option<i64>,
    pub created_at: i64,
}
from_row!(Reservation in "reservations" {
    id, item_id, location_id, quantity, status, owner_type, owner_id, expires_at, resolved_at, created_at
});

const RESERVATION_COLUMNS: &str =
    "id, item_id, location_id, quantity, status, owner_type, owner_id, expires_at, resolved_at, created_at";

pub struct NewReservation<'a> {
    pub workspace_id: &'a str,
    pub idempotency_key: &'a str,
    pub actor: &'a str,
    pub item_id: &'a str,
    pub location_id: &'a str,
    pub quantity: i64,
    pub owner_type: &'a str,
    pub owner_id: Option<&'a str>,
    pub expires_at: i64,
}

/// Holds stock until `expires_at`. The same key again returns the same hold.
///
/// The reservation row is written before the balance is updated, so the balance row is
/// locked (on PostgreSQL) only for its ledger entry and the commit: a hot SKU serialises on
/// as little as possible.
pub fn reserve(c: &mut dyn Conn, r: &NewReservation<'_>, now: i64) -> Result<Reservation> {
    let change = |id: Option<&'static str>| Change {
        workspace_id: r.workspace_id,
        idempotency_key: r.idempotency_key,
        reason: "hold",
        actor: r.actor,
        reference_type: "reservation",
        reference_id: id,
        lines: vec![Line {
            item_id: r.item_id.to_owned(),
            location_id: r.location_id.to_owned(),
            movement: Movement::Reserve { quantity: r.quantity },
        }],
    };
    // A replay is answered before anything is written.
    let seen = c.query_opt(
        &Stmt::new(
            "SELECT request_hash, reference_id FROM inventory_groups WHERE workspace_id = :ws AND idempotency_key = :key",
        )
        .bind("ws", r.workspace_id)
        .bind("key", r.idempotency_key),
    )?;
    if let Some(row) = seen {
        let (hash, reference): (String, Option<String>) = (row.get("request_hash")?, row.get("reference_id")?);
        if hash != request_hash(&change(None)) {
            return Err(InventoryError::KeyReused);
        }
        let id = reference.ok_or(InventoryError::NotFound("reservation"))?;
        return reservation(c, r.workspace_id, &id)?.ok_or(InventoryError::NotFound("reservation"));
    }
    let id = sb_core::new_id();
    let held: Reservation = c
        .fetch_opt(
            &Stmt::new(format!(
                "INSERT INTO reservations (id, workspace_id, item_id, location_id, quantity, status, owner_type,
                                           owner_id, expires_at, resolved_at, created_at)
                 VALUES (:id, :ws, :item, :location, :q, 'active', :owner_type, :owner_id, :expires, NULL, :now)
                 RETURNING {RESERVATION_COLUMNS}"
            ))
            .bind("id", &id)
            .bind("ws", r.workspace_id)
            .bind("item", r.item_id)
            .bind("location", r.location_id)
            .bind("q", r.quantity)
            .bind("owner_type", r.owner_type)
            .bind("owner_id", r.owner_id)
            .bind("expires", r.expires_at)
            .bind("now", now),
        )?
        .ok_or(InventoryError::NotFound("reservation"))?;
    let mut with_reference = change(None);
    with_reference.reference_id = Some(&id);
    match apply(c, &with_reference, now)? {
        Outcome::Applied { .. } => Ok(held),
        // A concurrent request with the same key won: its hold is the one.
        Outcome::Replayed { reference_id, .. } => {
            c.execute(&Stmt::new("DELETE FROM reservations WHERE id = :id").bind("id", &id))?;
            let id = reference_id.ok_or(InventoryError::NotFound("reservation"))?;
            reservation(c, r.workspace_id, &id)?.ok_or(InventoryError::NotFound("reservation"))
        }
    }
}

pub fn reservation(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Reservation>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

/// The active holds of an owner (a cart's checkout).
pub fn active_holds(c: &mut dyn Conn, ws: &str, owner_type: &str, owner_id: &str) -> Result<Vec<Reservation>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations
             WHERE workspace_id = :ws AND owner_type = :owner_type AND owner_id = :owner_id AND status = 'active'
             ORDER BY item_id, location_id"
        ))
        .bind("ws", ws)
        .bind("owner_type", owner_type)
        .bind("owner_id", owner_id),
    )?)
}

/// How a hold ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// It becomes a commitment to an order.
    Committed,
    Released,
    Expired,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Committed => "committed",
            Resolution::Released => "released",
            Resolution::Expired => "expired",
        }
    }
}

/// Ends an active hold, once. Committing an expired hold is refused (take a new one). Doing
/// the same again is a no-op that returns the reservation as it is.
pub fn resolve(c: &mut dyn Conn, ws: &str, id: &str, to: Resolution, actor: &str, now: i64) -> Result<Reservation> {
    let current = reservation(c, ws, id)?.ok_or(InventoryError::NotFound("reservation"))?;
    if current.status == to.as_str() {
        return Ok(current);
    }
    if current.status != "active" {
        return Err(InventoryError::AlreadyResolved(current.status));
    }
    if to == Resolution::Committed && current.expires_at <= now {
        return Err(InventoryError::AlreadyResolved("expired".into()));
    }
    let resolved: Option<Reservation> = c.fetch_opt(
        &Stmt::new(format!(
            "UPDATE reservations SET status = :to, resolved_at = :now
             WHERE workspace_id = :ws AND id = :id AND status = 'active'
             RETURNING {RESERVATION_COLUMNS}"
        ))
        .bind("to", to.as_str())
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?;
    // Another writer resolved it between the read and the update.
    let resolved = resolved.ok_or_else(|| InventoryError::AlreadyResolved("resolved".into()))?;
    let movement = match to {
        Resolution::Committed => Movement::Commit {
            quantity: resolved.quantity,
        },
        Resolution::Released | Resolution::Expired => Movement::Unreserve {
            quantity: resolved.quantity,
        },
    };
    let key = format!("reservation:{id}:{}", to.as_str());
    let change = Change {
        workspace_id: ws,
        idempotency_key: &key,
        reason: to.as_str(),
        actor,
        reference_type: "reservation",
        reference_id: Some(id),
        lines: vec![Line {
            item_id: resolved.item_id.clone(),
            location_id: resolved.location_id.clone(),
            movement,
        }],
    };
    apply(c, &change, now)?;
    Ok(resolved)
}

/// Expires up to `limit` holds whose time has passed (any workspace); returns how many.
/// Until swept, an expired hold still blocks its stock: the safe direction.
/// Expires holds past their time; returns them with their workspace.
pub fn expire_due(c: &mut dyn Conn, now: i64, limit: i64) -> Result<Vec<(String, Reservation)>> {
    let due = c.query(
        &Stmt::new(
            "SELECT workspace_id, id FROM reservations WHERE status = 'active' AND expires_at <= :now
             ORDER BY expires_at LIMIT :limit",
        )
        .bind("now", now)
        .bind("limit", limit),
    )?;
    let mut expired = Vec::new();
    for row in due {
        let (ws, id): (String, String) = (row.get("workspace_id")?, row.get("id")?);
        match resolve(c, &ws, &id, Resolution::Expired, "system:sweeper", now) {
            Ok(hold) => expired.push((ws, hold)),
            Err(InventoryError::AlreadyResolved(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(expired)
}

/// Differences between the balances and what the ledger and the active holds say they
/// should be (commerce.md §8.4, invariants 3–4): empty when all agree.
pub fn check(c: &mut dyn Conn, ws: &str) -> Result<Vec<String>> {
    let mut expected: BTreeMap<(String, String), Balance> = BTreeMap::new();
    let sums = c.query(
        &Stmt::new(
            "SELECT item_id, location_id, bucket, CAST(SUM(delta) AS BIGINT) AS total FROM inventory_ledger
             WHERE workspace_id = :ws GROUP BY item_id, location_id, bucket",
        )
        .bind("ws", ws),
    )?;
    for row in sums {
        let key = (row.get::<String>("item_id")?, row.get::<String>("location_id")?);
        let bucket: String = row.get("bucket")?;
        let bucket = Bucket::parse(&bucket).ok_or_else(|| InventoryError::Invalid(format!("bucket {bucket}")))?;
        let total: i64 = row.get("total")?;
        let entry = expected.entry(key).or_default();
        *entry = entry.plus(&Deltas::default().with(bucket, total));
    }
    let mut problems = Vec::new();
    let rows = c.query(
        &Stmt::new(format!(
            "SELECT item_id, location_id, {BALANCE_COLUMNS} FROM inventory_balances WHERE workspace_id = :ws"
        ))
        .bind("ws", ws),
    )?;
    let mut seen = 0;
    for row in rows {
        let key = (row.get::<String>("item_id")?, row.get::<String>("location_id")?);
        let stored = balance_of(&row)?;
        let replayed = expected.get(&key).copied().unwrap_or_default();
        if expected.contains_key(&key) {
            seen += 1;
        }
        if stored != replayed {
            problems.push(format!("{}@{}: balance {stored:?}, ledger {replayed:?}", key.0, key.1));
        }
        if !stored.holds() {
            problems.push(format!("{}@{}: invariant broken {stored:?}", key.0, key.1));
        }
        let held = c.query_one(
            &Stmt::new(
                "SELECT CAST(COALESCE(SUM(quantity), 0) AS BIGINT) AS held FROM reservations
                 WHERE workspace_id = :ws AND item_id = :item AND location_id = :location AND status = 'active'",
            )
            .bind("ws", ws)
            .bind("item", &key.0)
            .bind("location", &key.1),
        )?;
        let held: i64 = held.get("held")?;
        if held != stored.reserved {
            problems.push(format!(
                "{}@{}: {held} held by active reservations but {} reserved",
                key.0, key.1, stored.reserved
            ));
        }
    }
    if seen != expected.len() {
        problems.push("the ledger has rows for a balance that does not exist".into());
    }
    Ok(problems)
}
