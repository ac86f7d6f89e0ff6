use sb_sql::{Conn, Stmt, from_row};
use serde::Serialize;

use crate::Result;

#[derive(Debug, Clone, Serialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}
from_row!(Workspace in "workspaces" { id, name, created_at });

pub fn create(c: &mut dyn Conn, name: &str, now: i64) -> Result<Workspace> {
    let ws = Workspace {
        id: sb_core::new_id(),
        name: name.to_owned(),
        created_at: now,
    };
    c.execute(
        &Stmt::new("INSERT INTO workspaces (id, name, created_at) VALUES (:id, :name, :at)")
            .bind("id", &ws.id)
            .bind("name", &ws.name)
            .bind("at", now),
    )?;
    Ok(ws)
}

pub fn get(c: &mut dyn Conn, id: &str) -> Result<Option<Workspace>> {
    Ok(c.fetch_opt(&Stmt::new("SELECT id, name, created_at FROM workspaces WHERE id = :id").bind("id", id))?)
}

pub fn count(c: &mut dyn Conn) -> Result<i64> {
    Ok(c.query_one(&Stmt::new("SELECT COUNT(*) AS n FROM workspaces"))?
        .get("n")?)
}

pub fn first_by_name(c: &mut dyn Conn, name: &str) -> Result<Option<Workspace>> {
    Ok(c.fetch_opt(
        &Stmt::new("SELECT id, name, created_at FROM workspaces WHERE name = :name ORDER BY id LIMIT 1")
            .bind("name", name),
    )?)
}
