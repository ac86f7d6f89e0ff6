//! The customer profile behind every channel and event: identity resolution with automatic,
//! logged, reversible merges; traits that keep their source and time (newest event wins);
//! loyalty membership; erasure that leaves a tombstone and a suppression; export.

use sb_core::identity::{self, Found, Held, Identifier};
use sb_sql::{Conn, Stmt, from_row};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::merges::{self, Cause, MergeError};
use crate::{Result, StoreError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trait {
    pub name: String,
    pub value_json: String,
    pub source: String,
    pub event_id: Option<String>,
    pub at: i64,
}
from_row!(Trait in "customer_traits" { name, value_json, source, event_id, at });

/// The outcome of resolving one set of identifiers.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub customer_id: String,
    pub created: bool,
    pub merges: Vec<String>,
    pub dropped: Vec<Identifier>,
}

/// On PostgreSQL two transactions could each miss the other's new identifiers and create two
/// profiles for one person; locking each identifier (sorted, so no deadlock) makes them take
/// turns. SQLite's single writer already runs them one after the other.
fn lock(c: &mut dyn Conn, ws: &str, incoming: &[Identifier]) -> Result<()> {
    if c.backend() != sb_sql::Backend::Postgres {
        return Ok(());
    }
    let mut keys: Vec<String> = incoming
        .iter()
        .map(|i| format!("{ws}|{}|{}|{}", i.kind, i.scope, i.value))
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        c.execute(&Stmt::new("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))").bind("key", key))?;
    }
    Ok(())
}

fn held_by(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<Vec<Held>> {
    Ok(crate::customers::identities(c, ws, customer)?
        .into_iter()
        .map(|i| Held {
            identifier: Identifier::new(&i.kind, &i.scope, &i.value),
            since: i.created_at,
        })
        .collect())
}

/// Resolves a set of normalised identifiers to one profile: creates it, attaches what is new
/// and merges the profiles a shared identifier joins, within the limits of
/// `sb_core::identity`. Every merge is logged with the identifier and event behind it.
pub fn resolve(
    c: &mut dyn Conn,
    ws: &str,
    incoming: &[Identifier],
    event_id: Option<&str>,
    now: i64,
) -> Result<Resolution> {
    lock(c, ws, incoming)?;
    let mut found = Found::default();
    for id in incoming {
        if let Some(owner) = crate::customers::find_identity_owner(c, ws, &id.kind, &id.scope, &id.value)? {
            if !found.profiles.contains_key(&owner) {
                let held = held_by(c, ws, &owner)?;
                found.profiles.insert(owner.clone(), held);
            }
            found.owners.insert(id.clone(), owner);
        }
    }
    let plan = identity::plan(incoming, &found, now);
    let (customer_id, created) = match &plan.target {
        Some(id) => (id.clone(), false),
        None => (create(c, ws, now)?, true),
    };
    let mut merge_ids = Vec::new();
    for (absorbed, via) in &plan.merge {
        let cause = Cause {
            actor_id: None,
            rule: "shared_identifier",
            // The identifier that found the target and the one that found the absorbed profile,
            // both carried by the same event.
            evidence: json!({"identifier": plan.target_via, "absorbed_via": via, "event_id": event_id}),
        };
        match merges::merge_with(c, ws, &customer_id, absorbed, cause, now) {
            Ok(m) => merge_ids.push(m.id),
            Err(MergeError::Store(e)) => return Err(e),
            // The plan keeps the limits, so a refusal here means the data changed under us:
            // the event still belongs to the target, the profiles stay apart.
            Err(e) => tracing::warn!(error = %e, "an automatic merge was refused"),
        }
    }
    for id in &plan.attach {
        let hint = crate::customers::Hint {
            kind: &id.kind,
            value: &id.value,
            verified: true,
        };
        crate::customers::attach(c, ws, &customer_id, &hint, &id.scope, now)?;
    }
    Ok(Resolution {
        customer_id,
        created,
        merges: merge_ids,
        dropped: plan.dropped,
    })
}

fn create(c: &mut dyn Conn, ws: &str, now: i64) -> Result<String> {
    let id = sb_core::new_id();
    c.execute(
        &Stmt::new(
            "INSERT INTO customers (id, workspace_id, attributes_json, created_at, updated_at)
             VALUES (:id, :ws, '{}', :now, :now)",
        )
        .bind("id", &id)
        .bind("ws", ws)
        .bind("now", now),
    )?;
    crate::domain_events::customer_created(c, ws, &id, now)?;
    Ok(id)
}

/// Sets traits, each only if `at` is not older than what the profile holds (last writer wins
/// by event time, not arrival time). The name, e-mail and phone also fill the profile's
/// columns the inbox shows, where those are empty.
pub fn set_traits(
    c: &mut dyn Conn,
    ws: &str,
    customer: &str,
    traits: &Map<String, Value>,
    source: &str,
    event_id: Option<&str>,
    at: i64,
) -> Result<()> {
    for (name, value) in traits {
        if name.len() > 200 {
            continue;
        }
        c.execute(
            &Stmt::new(
                "INSERT INTO customer_traits (workspace_id, customer_id, name, value_json, source, event_id, at)
                 VALUES (:ws, :customer, :name, :value, :source, :event, :at)
                 ON CONFLICT (workspace_id, customer_id, name) DO UPDATE
                    SET value_json = excluded.value_json, source = excluded.source, event_id = excluded.event_id,
                        at = excluded.at
                    WHERE customer_traits.at <= excluded.at",
            )
            .bind("ws", ws)
            .bind("customer", customer)
            .bind("name", name.as_str())
            .bind("value", value.to_string())
            .bind("source", source)
            .bind("event", event_id)
            .bind("at", at),
        )?;
    }
    let text = |k: &str| traits.get(k).and_then(Value::as_str).map(str::to_owned);
    let name = text("name").or_else(|| match (text("first_name"), text("last_name")) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (f, l) => f.or(l),
    });
    let email = text("email").and_then(|e| sb_core::inbox::normalise_email(&e));
    let phone = text("phone").and_then(|p| sb_core::inbox::normalise_phone(&p));
    crate::customers::fill_profile(c, ws, customer, name.as_deref(), email.as_deref(), phone.as_deref(), at)
}

/// Trait names in use in the workspace (templates may name any of them).
pub fn trait_names(c: &mut dyn Conn, ws: &str) -> Result<Vec<String>> {
    c.query(
        &Stmt::new("SELECT DISTINCT name FROM customer_traits WHERE workspace_id = :ws ORDER BY name LIMIT 500")
            .bind("ws", ws),
    )?
    .iter()
    .map(|r| Ok(r.get_in::<String>("customer_traits", "name")?))
    .collect()
}

pub fn traits(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<Vec<Trait>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT name, value_json, source, event_id, at FROM customer_traits
             WHERE workspace_id = :ws AND customer_id = :customer ORDER BY name",
        )
        .bind("ws", ws)
        .bind("customer", customer),
    )?)
}

/// A customer's traits and current consents, as a merge keeps them for undo.
pub fn snapshot(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<Value> {
    let consents = crate::consents::list(c, ws, customer)?;
    Ok(json!({ "traits": traits(c, ws, customer)?, "consents": consents }))
}

/// Puts back a customer's traits and current consents exactly as `snapshot` recorded them.
pub fn restore(c: &mut dyn Conn, ws: &str, customer: &str, snapshot: &Value) -> Result<()> {
    clear_traits_and_consents(c, ws, customer)?;
    let traits: Vec<Trait> = serde_json::from_value(snapshot["traits"].clone()).unwrap_or_default();
    for t in &traits {
        put_trait_if_newer(c, ws, customer, t)?;
    }
    let consents: Vec<crate::consents::Consent> =
        serde_json::from_value(snapshot["consents"].clone()).unwrap_or_default();
    for k in &consents {
        put_consent_if_newer(c, ws, customer, k)?;
    }
    Ok(())
}

fn clear_traits_and_consents(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<()> {
    for table in ["customer_traits", "consents"] {
        c.execute(
            &Stmt::new(format!(
                "DELETE FROM {table} WHERE workspace_id = :ws AND customer_id = :customer"
            ))
            .bind("ws", ws)
            .bind("customer", customer),
        )?;
    }
    Ok(())
}

/// Gives `customer` the trait unless it holds a newer statement of it.
fn put_trait_if_newer(c: &mut dyn Conn, ws: &str, customer: &str, t: &Trait) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO customer_traits (workspace_id, customer_id, name, value_json, source, event_id, at)
             VALUES (:ws, :customer, :name, :value, :source, :event, :at)
             ON CONFLICT (workspace_id, customer_id, name) DO UPDATE
                SET value_json = excluded.value_json, source = excluded.source, event_id = excluded.event_id,
                    at = excluded.at
                WHERE customer_traits.at < excluded.at",
        )
        .bind("ws", ws)
        .bind("customer", customer)
        .bind("name", &t.name)
        .bind("value", &t.value_json)
        .bind("source", &t.source)
        .bind("event", t.event_id.as_deref())
        .bind("at", t.at),
    )?;
    Ok(())
}

/// Gives `customer` the current consent unless it holds a newer statement for that channel and purpose.
fn put_consent_if_newer(c: &mut dyn Conn, ws: &str, customer: &str, k: &crate::consents::Consent) -> Result<()> {
    c.execute(
        &Stmt::new(
            "INSERT INTO consents (workspace_id, customer_id, channel, purpose, granted, source, at)
             VALUES (:ws, :customer, :channel, :purpose, :granted, :source, :at)
             ON CONFLICT (workspace_id, customer_id, channel, purpose) DO UPDATE
                SET granted = excluded.granted, source = excluded.source, at = excluded.at
                WHERE consents.at < excluded.at",
        )
        .bind("ws", ws)
        .bind("customer", customer)
        .bind("channel", &k.channel)
        .bind("purpose", &k.purpose)
        .bind("granted", k.granted)
        .bind("source", &k.source)
        .bind("at", k.at),
    )?;
    Ok(())
}

/// Folds `source`'s traits and current consents into `target`'s, the newer statement winning.
pub fn absorb(c: &mut dyn Conn, ws: &str, target: &str, source: &str) -> Result<()> {
    for t in traits(c, ws, source)? {
        put_trait_if_newer(c, ws, target, &t)?;
    }
    for k in crate::consents::list(c, ws, source)? {
        put_consent_if_newer(c, ws, target, &k)?;
    }
    clear_traits_and_consents(c, ws, source)?;
    Ok(())
}

/// The profile that holds an identifier of any kind (looked up as its kind normalises it).
pub fn lookup(c: &mut dyn Conn, ws: &str, kind: &str, scope: &str, raw: &str) -> Result<Option<String>> {
    let value = match identity::normalise(kind, raw) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    crate::customers::find_identity_owner(c, ws, kind, scope, &value)
}

/// Whether an identifier that `ws` does not hold is another workspace's.
pub fn held_elsewhere(c: &mut dyn Conn, ws: &str, kind: &str, scope: &str, raw: &str) -> Result<bool> {
    match identity::normalise(kind, raw) {
        Ok(value) => crate::customers::identity_held_elsewhere(c, ws, kind, scope, &value),
        Err(_) => Ok(false),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LoyaltyMember {
    pub customer_id: String,
    pub loyalty_id: String,
    pub incentive: String,
    pub joined_at: i64,
}
from_row!(LoyaltyMember in "loyalty_members" { customer_id, loyalty_id, incentive, joined_at });

pub fn loyalty(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<Option<LoyaltyMember>> {
    Ok(c.fetch_opt(
        &Stmt::new(
            "SELECT customer_id, loyalty_id, incentive, joined_at FROM loyalty_members
             WHERE workspace_id = :ws AND customer_id = :customer",
        )
        .bind("ws", ws)
        .bind("customer", customer),
    )?)
}

/// Enrols a profile in the loyalty programme: a loyalty id (also an identifier) and the
/// incentive given for joining. Joining twice returns the existing membership.
pub fn join_loyalty(c: &mut dyn Conn, ws: &str, customer: &str, incentive: &str, now: i64) -> Result<LoyaltyMember> {
    if let Some(m) = loyalty(c, ws, customer)? {
        return Ok(m);
    }
    let loyalty_id = format!("L-{}", &sb_core::new_id().replace('-', "")[20..].to_uppercase());
    c.execute(
        &Stmt::new(
            "INSERT INTO loyalty_members (workspace_id, customer_id, loyalty_id, incentive, joined_at)
             VALUES (:ws, :customer, :loyalty, :incentive, :now)",
        )
        .bind("ws", ws)
        .bind("customer", customer)
        .bind("loyalty", &loyalty_id)
        .bind("incentive", incentive)
        .bind("now", now),
    )?;
    let hint = crate::customers::Hint {
        kind: "loyalty_id",
        value: &loyalty_id,
        verified: true,
    };
    crate::customers::attach(c, ws, customer, &hint, "", now)?;
    Ok(LoyaltyMember {
        customer_id: customer.to_owned(),
        loyalty_id,
        incentive: incentive.to_owned(),
        joined_at: now,
    })
}

/// Splits identifiers off a profile by hand (a shared device's anonymous id, a wrongly linked
/// address): they move to a new profile with the events they carried (by user or anonymous
/// id). Returns the new profile's id. Merging the two again is an ordinary, undoable merge.
pub fn split(c: &mut dyn Conn, ws: &str, customer: &str, ids: &[Identifier], now: i64) -> Result<String> {
    let profile = crate::customers::get(c, ws, customer)?.ok_or(StoreError::NotFound("customer"))?;
    if profile.merged_into.is_some() || profile.erased_at.is_some() {
        return Err(StoreError::Conflict(
            "this profile was merged into another or erased".into(),
        ));
    }
    let held: Vec<Identifier> = held_by(c, ws, customer)?.into_iter().map(|h| h.identifier).collect();
    if ids.is_empty() || ids.iter().any(|i| !held.contains(i)) {
        return Err(StoreError::Invalid(
            "every identifier to split off must be one this profile holds".into(),
        ));
    }
    let new = create(c, ws, now)?;
    for id in ids {
        c.execute(
            &Stmt::new(
                "UPDATE identities SET customer_id = :new
                 WHERE workspace_id = :ws AND customer_id = :old AND kind = :kind AND scope = :scope AND value = :value",
            )
            .bind("new", &new)
            .bind("ws", ws)
            .bind("old", customer)
            .bind("kind", &id.kind)
            .bind("scope", &id.scope)
            .bind("value", &id.value),
        )?;
        let column = match id.kind.as_str() {
            "user_id" => "user_id",
            "anonymous_id" => "anonymous_id",
            _ => continue,
        };
        c.execute(
            &Stmt::new(format!(
                "UPDATE events SET customer_id = :new WHERE workspace_id = :ws AND customer_id = :old AND {column} = :value"
            ))
            .bind("new", &new)
            .bind("ws", ws)
            .bind("old", customer)
            .bind("value", &id.value),
        )?;
    }
    Ok(new)
}

/// What stands in for an erased identifier: a hash, so re-ingestion is recognised without
/// keeping the value.
pub fn erased_digest(ws: &str, id: &Identifier) -> String {
    hex::encode(Sha256::digest(format!("{ws}|{}|{}|{}", id.kind, id.scope, id.value)))
}

pub fn any_erased(c: &mut dyn Conn, ws: &str, ids: &[Identifier]) -> Result<bool> {
    for id in ids {
        let hit = c.query_opt(
            &Stmt::new("SELECT 1 AS x FROM erased_identifiers WHERE workspace_id = :ws AND digest = :digest")
                .bind("ws", ws)
                .bind("digest", erased_digest(ws, id)),
        )?;
        if hit.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Everything stored about a customer, as one JSON document (GDPR Art. 15 and 20).
pub fn export(c: &mut dyn Conn, ws: &str, customer: &str) -> Result<Value> {
    let profile = crate::customers::get(c, ws, customer)?.ok_or(StoreError::NotFound("customer"))?;
    let rows = |c: &mut dyn Conn, sql: &str| -> Result<Vec<Value>> {
        Ok(
            c.query(&Stmt::new(sql.to_owned()).bind("ws", ws).bind("customer", customer))?
                .iter()
                .map(row_to_json)
                .collect(),
        )
    };
    Ok(json!({
        "customer": profile,
        "identifiers": crate::customers::identities(c, ws, customer)?,
        "traits": traits(c, ws, customer)?,
        "consents": crate::consents::list(c, ws, customer)?,
        "consent_history": crate::consents::history(c, ws, customer)?,
        "loyalty": loyalty(c, ws, customer)?,
        "events": rows(c, "SELECT id, message_id, type, name, category, user_id, anonymous_id, ts, received_at,
                              properties_json, traits_json, context_json FROM events
                           WHERE workspace_id = :ws AND customer_id = :customer ORDER BY ts, id")?,
        "messages": rows(c, "SELECT id, conversation_id, channel, direction, body, status, purpose, sent_at FROM messages
                             WHERE workspace_id = :ws AND customer_id = :customer ORDER BY sent_at, id")?,
        "orders": rows(c, "SELECT id, number, channel, fulfillment, status, total_minor, currency, placed_at FROM orders
                           WHERE workspace_id = :ws AND customer_id = :customer ORDER BY placed_at, id")?,
        "carts": rows(c, "SELECT id, status, created_at FROM carts WHERE workspace_id = :ws AND customer_id = :customer")?,
    }))
}

/// A row as a JSON object; `…_json` columns are embedded as the JSON they hold.
fn row_to_json(row: &sb_sql::Row) -> Value {
    let mut out = Map::new();
    for (column, value) in row.entries() {
        let v = match value {
            sb_sql::Value::Null => Value::Null,
            sb_sql::Value::Bool(b) => json!(b),
            sb_sql::Value::I64(i) => json!(i),
            sb_sql::Value::F64(f) => json!(f),
            sb_sql::Value::Text(t) if column.ends_with("_json") => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
            sb_sql::Value::Text(t) => json!(t),
            sb_sql::Value::Bytes(b) => json!(hex::encode(b)),
        };
        out.insert(column.trim_end_matches("_json").to_owned(), v);
    }
    Value::Object(out)
}

/// Erases a customer (GDPR Art. 17): identifiers become hashes that stop re-ingestion, and
/// events, traits, messages, conversation, consents, carts and loyalty membership are deleted.
/// Orders stay for the books, detached from the person; the customer row stays as an empty
/// tombstone so nothing points nowhere. Returns how many rows went, by table.
pub fn erase(c: &mut dyn Conn, ws: &str, customer: &str, now: i64) -> Result<Map<String, Value>> {
    let profile = crate::customers::get(c, ws, customer)?.ok_or(StoreError::NotFound("customer"))?;
    if profile.merged_into.is_some() {
        return Err(StoreError::Conflict(
            "this customer was merged into another; erase that one".into(),
        ));
    }
    for i in crate::customers::identities(c, ws, customer)? {
        let id = Identifier::new(&i.kind, &i.scope, &i.value);
        c.execute(
            &Stmt::new(
                "INSERT INTO erased_identifiers (workspace_id, digest, at) VALUES (:ws, :digest, :now)
                 ON CONFLICT (workspace_id, digest) DO NOTHING",
            )
            .bind("ws", ws)
            .bind("digest", erased_digest(ws, &id))
            .bind("now", now),
        )?;
    }
    let mut deleted = Map::new();
    let conversation = crate::conversations::id_for_customer(c, ws, customer)?;
    let by_customer = [
        "identities",
        "events",
        "customer_traits",
        "consents",
        "consent_events",
        "loyalty_members",
        "messages",
    ];
    if let Some(conversation) = &conversation {
        c.execute(
            &Stmt::new("DELETE FROM conversation_labels WHERE workspace_id = :ws AND conversation_id = :id")
                .bind("ws", ws)
                .bind("id", conversation),
        )?;
    }
    for table in by_customer {
        let n = c.execute(
            &Stmt::new(format!(
                "DELETE FROM {table} WHERE workspace_id = :ws AND customer_id = :customer"
            ))
            .bind("ws", ws)
            .bind("customer", customer),
        )?;
        deleted.insert(table.to_owned(), json!(n));
    }
    if let Some(conversation) = &conversation {
        c.execute(
            &Stmt::new("DELETE FROM conversations WHERE workspace_id = :ws AND id = :id")
                .bind("ws", ws)
                .bind("id", conversation),
        )?;
    }
    let n = c.execute(
        &Stmt::new("UPDATE carts SET customer_id = NULL WHERE workspace_id = :ws AND customer_id = :customer")
            .bind("ws", ws)
            .bind("customer", customer),
    )?;
    deleted.insert("carts_detached".into(), json!(n));
    c.execute(
        &Stmt::new(
            "UPDATE customers SET name = NULL, email = NULL, phone = NULL, attributes_json = '{}', erased_at = :now,
                    updated_at = :now
             WHERE workspace_id = :ws AND id = :customer",
        )
        .bind("now", now)
        .bind("ws", ws)
        .bind("customer", customer),
    )?;
    Ok(deleted)
}
