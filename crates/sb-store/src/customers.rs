//! Customers and their identities. Global identifiers (E.164 phone, normalised e-mail) link
//! a customer across channels on their own; scoped ones (a page-scoped id, a bot's user id,
//! an API integration's user id) link only within the channel account that issued them.

use sb_core::inbox::is_global_identity;
use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Customer {
    pub id: String,
    pub workspace_id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub attributes_json: String,
    /// Set while this customer is merged into another.
    pub merged_into: Option<String>,
    /// Set when the customer's data was erased; the row stays as a tombstone.
    pub erased_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(Customer in "customers" { id, workspace_id, name, email, phone, attributes_json, merged_into, erased_at, created_at, updated_at });

#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub id: String,
    pub customer_id: String,
    pub kind: String,
    pub scope: String,
    pub value: String,
    pub verified: bool,
    pub created_at: i64,
}
from_row!(Identity in "identities" { id, customer_id, kind, scope, value, verified, created_at });

const COLUMNS: &str =
    "id, workspace_id, name, email, phone, attributes_json, merged_into, erased_at, created_at, updated_at";

/// An identifier as a channel reports it.
#[derive(Debug, Clone)]
pub struct Hint<'a> {
    pub kind: &'a str,
    pub value: &'a str,
    pub verified: bool,
}

/// The scope an identifier of `kind` lives in, for a message that came through `account_id`.
pub fn scope_of(kind: &str, account_id: &str) -> String {
    if is_global_identity(kind) {
        String::new()
    } else {
        account_id.to_owned()
    }
}

pub fn find_identity_owner(c: &mut dyn Conn, ws: &str, kind: &str, scope: &str, value: &str) -> Result<Option<String>> {
    Ok(match c.query_opt(
        &Stmt::new(
            "SELECT customer_id FROM identities WHERE workspace_id = :ws AND kind = :kind AND scope = :scope AND value = :value",
        )
        .bind("ws", ws)
        .bind("kind", kind)
        .bind("scope", scope)
        .bind("value", value),
    )? {
        Some(r) => Some(r.get_in("identities", "customer_id")?),
        None => None,
    })
}

/// Whether another workspace than `ws` holds this identifier (one unique-index probe per
/// workspace): an audit of look-ups that reach for another workspace's customer.
pub fn identity_held_elsewhere(c: &mut dyn Conn, ws: &str, kind: &str, scope: &str, value: &str) -> Result<bool> {
    Ok(c.query_opt(
        &Stmt::new(
            "SELECT i.workspace_id FROM workspaces w
                 JOIN identities i ON i.workspace_id = w.id AND i.kind = :kind AND i.scope = :scope AND i.value = :value
                 WHERE w.id <> :ws LIMIT 1",
        )
        .bind("ws", ws)
        .bind("kind", kind)
        .bind("scope", scope)
        .bind("value", value),
    )?
    .is_some())
}

/// The customer holding a *verified* identifier (claims typed in by a visitor do not count).
pub fn find_verified_owner(c: &mut dyn Conn, ws: &str, kind: &str, scope: &str, value: &str) -> Result<Option<String>> {
    Ok(
        match c.query_opt(
            &Stmt::new(
                "SELECT customer_id FROM identities
             WHERE workspace_id = :ws AND kind = :kind AND scope = :scope AND value = :value AND verified = :yes",
            )
            .bind("ws", ws)
            .bind("kind", kind)
            .bind("scope", scope)
            .bind("value", value)
            .bind("yes", true),
        )? {
            Some(r) => Some(r.get_in("identities", "customer_id")?),
            None => None,
        },
    )
}

/// Gives a verified identifier to a customer: an unverified claim on it (whoever made it)
/// moves to this customer, or it is attached anew. Returns false when someone holds it verified.
pub fn attach_verified(
    c: &mut dyn Conn,
    ws: &str,
    customer_id: &str,
    kind: &str,
    scope: &str,
    value: &str,
    now: i64,
) -> Result<bool> {
    let moved = c.execute(
        &Stmt::new(
            "UPDATE identities SET customer_id = :customer, verified = :yes
             WHERE workspace_id = :ws AND kind = :kind AND scope = :scope AND value = :value AND verified = :no",
        )
        .bind("customer", customer_id)
        .bind("yes", true)
        .bind("no", false)
        .bind("ws", ws)
        .bind("kind", kind)
        .bind("scope", scope)
        .bind("value", value),
    )?;
    if moved == 1 {
        return Ok(true);
    }
    let hint = Hint {
        kind,
        value,
        verified: true,
    };
    attach(c, ws, customer_id, &hint, scope, now)
}

/// Adds an identifier to a customer unless someone already holds it. Returns whether added.
pub fn attach(c: &mut dyn Conn, ws: &str, customer_id: &str, hint: &Hint<'_>, scope: &str, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new(
            "INSERT INTO identities (id, workspace_id, customer_id, kind, scope, value, verified, created_at)
             VALUES (:id, :ws, :customer, :kind, :scope, :value, :verified, :now)
             ON CONFLICT (workspace_id, kind, scope, value) DO NOTHING",
        )
        .bind("id", sb_core::new_id())
        .bind("ws", ws)
        .bind("customer", customer_id)
        .bind("kind", hint.kind)
        .bind("scope", scope)
        .bind("value", hint.value)
        .bind("verified", hint.verified)
        .bind("now", now),
    )? == 1)
}

/// Finds the customer the identifiers belong to, or creates one, and attaches the
/// identifiers nobody holds yet. The channel's own address (the first hint) decides when
/// identifiers point at different customers; merging those is a separate, audited step.
/// Dialects: on PostgreSQL two transactions could both miss each other's uncommitted
/// identifiers and create two customers for one person; locking each identifier (in sorted
/// order, so two resolutions cannot deadlock) makes them take turns. SQLite's single writer
/// already runs them one after the other.
fn lock_identifiers(c: &mut dyn Conn, ws: &str, account_id: &str, hints: &[Hint<'_>]) -> Result<()> {
    if c.backend() != sb_sql::Backend::Postgres {
        return Ok(());
    }
    let mut keys: Vec<String> = hints
        .iter()
        .map(|h| format!("{ws}|{}|{}|{}", h.kind, scope_of(h.kind, account_id), h.value))
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        c.execute(&Stmt::new("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))").bind("key", key))?;
    }
    Ok(())
}

pub fn resolve(
    c: &mut dyn Conn,
    ws: &str,
    account_id: &str,
    hints: &[Hint<'_>],
    name: Option<&str>,
    now: i64,
) -> Result<String> {
    lock_identifiers(c, ws, account_id, hints)?;
    let mut owner = None;
    let mut matched = None;
    for (i, hint) in hints.iter().enumerate() {
        let scope = scope_of(hint.kind, account_id);
        // An unverified global identifier is only a claim: it may not attach a message to someone else's history.
        // A placeholder value ("null", "0000") would glue strangers together.
        if (!hint.verified && is_global_identity(hint.kind)) || sb_core::identity::is_blocked(hint.value) {
            continue;
        }
        if let Some(found) = find_identity_owner(c, ws, hint.kind, &scope, hint.value)? {
            owner = Some(found);
            matched = Some(i);
            break;
        }
    }
    let customer_id = match owner {
        Some(id) => id,
        None => {
            let email = hints.iter().find(|h| h.kind == "email").map(|h| h.value);
            let phone = hints.iter().find(|h| h.kind == "phone").map(|h| h.value);
            let id = sb_core::new_id();
            c.execute(
                &Stmt::new(
                    "INSERT INTO customers (id, workspace_id, name, email, phone, attributes_json, created_at, updated_at)
                     VALUES (:id, :ws, :name, :email, :phone, '{}', :now, :now)",
                )
                .bind("id", &id)
                .bind("ws", ws)
                .bind("name", name)
                .bind("email", email)
                .bind("phone", phone)
                .bind("now", now),
            )?;
            crate::domain_events::customer_created(c, ws, &id, now)?;
            id
        }
    };
    for (i, hint) in hints.iter().enumerate() {
        // The identifier that found the customer is theirs already.
        if Some(i) != matched && !sb_core::identity::is_blocked(hint.value) {
            attach(c, ws, &customer_id, hint, &scope_of(hint.kind, account_id), now)?;
        }
    }
    let email = hints.iter().find(|h| h.kind == "email" && h.verified).map(|h| h.value);
    let phone = hints.iter().find(|h| h.kind == "phone" && h.verified).map(|h| h.value);
    fill_profile(c, ws, &customer_id, name, email, phone, now)?;
    Ok(customer_id)
}

/// Fills in what the profile lacks; never overwrites what an agent or an earlier channel set.
pub fn fill_profile(
    c: &mut dyn Conn,
    ws: &str,
    id: &str,
    name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    now: i64,
) -> Result<()> {
    // Nothing to fill: no statement (and no page written for an unchanged row).
    if name.is_none() && email.is_none() && phone.is_none() {
        return Ok(());
    }
    c.execute(
        &Stmt::new(
            "UPDATE customers SET
                name = CASE WHEN name IS NULL THEN :name ELSE name END,
                email = CASE WHEN email IS NULL THEN :email ELSE email END,
                phone = CASE WHEN phone IS NULL THEN :phone ELSE phone END,
                updated_at = :now
             WHERE workspace_id = :ws AND id = :id
               AND ((name IS NULL AND CAST(:name AS TEXT) IS NOT NULL)
                    OR (email IS NULL AND CAST(:email AS TEXT) IS NOT NULL)
                    OR (phone IS NULL AND CAST(:phone AS TEXT) IS NOT NULL))",
        )
        .bind("name", name)
        .bind("email", email)
        .bind("phone", phone)
        .bind("now", now)
        .bind("ws", ws)
        .bind("id", id),
    )?;
    Ok(())
}

pub fn get(c: &mut dyn Conn, ws: &str, id: &str) -> Result<Option<Customer>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM customers WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", ws)
        .bind("id", id),
    )?)
}

pub fn identities(c: &mut dyn Conn, ws: &str, customer_id: &str) -> Result<Vec<Identity>> {
    Ok(c.fetch_all(
        &Stmt::new(
            "SELECT id, customer_id, kind, scope, value, verified, created_at FROM identities
             WHERE workspace_id = :ws AND customer_id = :customer ORDER BY created_at, id",
        )
        .bind("ws", ws)
        .bind("customer", customer_id),
    )?)
}

/// The customer's address on a channel account: a scoped identity of that account, or a
/// global one of `kind`.
pub fn address(c: &mut dyn Conn, ws: &str, customer_id: &str, kind: &str, account_id: &str) -> Result<Option<String>> {
    Ok(
        match c.query_opt(
            &Stmt::new(
                "SELECT value FROM identities
             WHERE workspace_id = :ws AND customer_id = :customer AND kind = :kind AND scope = :scope
             ORDER BY created_at DESC LIMIT 1",
            )
            .bind("ws", ws)
            .bind("customer", customer_id)
            .bind("kind", kind)
            .bind("scope", scope_of(kind, account_id)),
        )? {
            Some(r) => Some(r.get_in("identities", "value")?),
            None => None,
        },
    )
}

/// Search by name, e-mail, phone or any identifier (case-insensitive on both backends).
pub fn search(c: &mut dyn Conn, ws: &str, query: &str, after: Option<&str>, limit: i64) -> Result<Vec<Customer>> {
    let pattern = format!("%{}%", query.trim().to_lowercase().replace(['%', '_'], ""));
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM customers cu
             WHERE cu.workspace_id = :ws AND cu.merged_into IS NULL AND cu.id > :after AND (
                 LOWER(COALESCE(cu.name, '')) LIKE :p OR LOWER(COALESCE(cu.email, '')) LIKE :p
                 OR COALESCE(cu.phone, '') LIKE :p
                 OR EXISTS (SELECT 1 FROM identities i WHERE i.customer_id = cu.id AND i.workspace_id = :ws
                            AND LOWER(i.value) LIKE :p))
             ORDER BY cu.id LIMIT :limit"
        ))
        .bind("ws", ws)
        .bind("after", after.unwrap_or(""))
        .bind("p", pattern)
        .bind("limit", limit),
    )?)
}
