use sb_core::Role;
use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::{Result, StoreError};

/// A user as the API shows it (no password hash).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: String,
    pub workspace_id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub is_owner: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}
from_row!(User in "users" { id, workspace_id, email, name, role, is_owner, disabled, created_at, updated_at });

impl User {
    pub fn role(&self) -> Role {
        // Roles are written only through `Role::as_str`; an unknown one is treated as the least privileged.
        Role::parse(&self.role).unwrap_or(Role::Agent)
    }
}

const COLUMNS: &str = "id, workspace_id, email, name, role, is_owner, disabled, created_at, updated_at";

pub struct NewUser<'a> {
    pub workspace_id: &'a str,
    pub email: &'a str,
    pub name: &'a str,
    pub role: Role,
    pub password_hash: &'a str,
    pub is_owner: bool,
}

/// E-mail addresses compare case-insensitively; we store them lower-cased and trimmed.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub fn create(c: &mut dyn Conn, u: &NewUser<'_>, now: i64) -> Result<User> {
    let email = normalise_email(u.email);
    if !email.contains('@') || email.len() > 254 {
        return Err(StoreError::Invalid("email must be an e-mail address".into()));
    }
    let user = User {
        id: sb_core::new_id(),
        workspace_id: u.workspace_id.to_owned(),
        email,
        name: u.name.trim().to_owned(),
        role: u.role.as_str().to_owned(),
        is_owner: u.is_owner,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let r = c.execute(
        &Stmt::new(
            "INSERT INTO users (id, workspace_id, email, name, role, password_hash, is_owner, disabled, created_at, updated_at)
             VALUES (:id, :ws, :email, :name, :role, :hash, :owner, :disabled, :at, :at)",
        )
        .bind("id", &user.id)
        .bind("ws", &user.workspace_id)
        .bind("email", &user.email)
        .bind("name", &user.name)
        .bind("role", &user.role)
        .bind("hash", u.password_hash)
        .bind("owner", user.is_owner)
        .bind("disabled", false)
        .bind("at", now),
    );
    match r {
        Ok(_) => Ok(user),
        Err(e) if e.is_unique_violation() => Err(StoreError::Conflict("a user with this e-mail exists".into())),
        Err(e) => Err(e.into()),
    }
}

pub fn get(c: &mut dyn Conn, workspace_id: &str, id: &str) -> Result<Option<User>> {
    Ok(c.fetch_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM users WHERE workspace_id = :ws AND id = :id"
        ))
        .bind("ws", workspace_id)
        .bind("id", id),
    )?)
}

pub fn list(c: &mut dyn Conn, workspace_id: &str, after: Option<&str>, limit: i64) -> Result<Vec<User>> {
    Ok(c.fetch_all(
        &Stmt::new(format!(
            "SELECT {COLUMNS} FROM users WHERE workspace_id = :ws AND id > :after ORDER BY id LIMIT :limit"
        ))
        .bind("ws", workspace_id)
        .bind("after", after.unwrap_or(""))
        .bind("limit", limit),
    )?)
}

/// For sign-in only: users are looked up by e-mail across workspaces (e-mails are unique).
pub fn credentials_by_email(c: &mut dyn Conn, email: &str) -> Result<Option<(User, String)>> {
    let row = c.query_opt(
        &Stmt::new(format!(
            "SELECT {COLUMNS}, password_hash FROM users WHERE email = :email"
        ))
        .bind("email", normalise_email(email)),
    )?;
    Ok(match row {
        None => None,
        Some(r) => Some((sb_sql::FromRow::from_row(&r)?, r.get_in("users", "password_hash")?)),
    })
}

pub fn update_role(c: &mut dyn Conn, workspace_id: &str, id: &str, role: Role, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new("UPDATE users SET role = :role, updated_at = :now WHERE workspace_id = :ws AND id = :id")
            .bind("role", role.as_str())
            .bind("now", now)
            .bind("ws", workspace_id)
            .bind("id", id),
    )? == 1)
}

pub fn set_disabled(c: &mut dyn Conn, workspace_id: &str, id: &str, disabled: bool, now: i64) -> Result<bool> {
    Ok(c.execute(
        &Stmt::new("UPDATE users SET disabled = :d, updated_at = :now WHERE workspace_id = :ws AND id = :id")
            .bind("d", disabled)
            .bind("now", now)
            .bind("ws", workspace_id)
            .bind("id", id),
    )? == 1)
}
