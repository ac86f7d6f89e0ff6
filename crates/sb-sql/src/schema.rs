//! A backend-neutral picture of the schema (tables, columns with a type class and
//! nullability, unique keys), used to prove that both migration trees build the same thing.

use crate::{Backend, Conn, Db, SqlError, Stmt};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: String,
    /// Sorted by column name.
    pub columns: Vec<ColumnShape>,
    /// Each key's columns in index order; the list sorted.
    pub unique_keys: Vec<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnShape {
    pub name: String,
    pub type_class: &'static str,
    pub not_null: bool,
}

fn type_class(declared: &str) -> &'static str {
    let t = declared.to_ascii_lowercase();
    if t.contains("int") {
        "integer"
    } else if t.contains("bool") {
        "boolean"
    } else if t.contains("char") || t.contains("text") || t.contains("clob") {
        "text"
    } else if t.contains("blob") || t.contains("bytea") {
        "bytes"
    } else if t.contains("real") || t.contains("floa") || t.contains("doub") {
        "float"
    } else {
        "other"
    }
}

pub async fn shape(db: &Db) -> Result<Vec<TableShape>, SqlError> {
    db.read(|c| match c.backend() {
        Backend::Sqlite => sqlite_shape(c),
        Backend::Postgres => postgres_shape(c),
    })
    .await
}

fn finish(mut tables: Vec<TableShape>) -> Vec<TableShape> {
    for t in &mut tables {
        t.columns.sort_by(|a, b| a.name.cmp(&b.name));
        t.unique_keys.sort();
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    tables
}

fn sqlite_shape(c: &mut dyn Conn) -> Result<Vec<TableShape>, SqlError> {
    let names = c.query(&Stmt::new(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    ))?;
    let mut tables = Vec::new();
    for n in names {
        let name: String = n.get("name")?;
        let columns = c
            .query(
                &Stmt::new("SELECT name, type, \"notnull\" AS not_null FROM pragma_table_info(:t)").bind("t", &name),
            )?
            .iter()
            .map(|r| {
                Ok(ColumnShape {
                    name: r.get("name")?,
                    type_class: type_class(&r.get::<String>("type")?),
                    not_null: r.get::<i64>("not_null")? == 1,
                })
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        let mut unique_keys = Vec::new();
        for idx in
            c.query(&Stmt::new("SELECT name FROM pragma_index_list(:t) WHERE \"unique\" = 1").bind("t", &name))?
        {
            let index: String = idx.get("name")?;
            let cols = c
                .query(&Stmt::new("SELECT name FROM pragma_index_info(:i) ORDER BY seqno").bind("i", index))?
                .iter()
                .map(|r| r.get::<String>("name"))
                .collect::<Result<Vec<_>, _>>()?;
            unique_keys.push(cols);
        }
        tables.push(TableShape {
            name,
            columns,
            unique_keys,
        });
    }
    Ok(finish(tables))
}

fn postgres_shape(c: &mut dyn Conn) -> Result<Vec<TableShape>, SqlError> {
    let names = c.query(&Stmt::new(
        "SELECT table_name::text AS name FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    ))?;
    let mut tables = Vec::new();
    for n in names {
        let name: String = n.get("name")?;
        let columns = c
            .query(
                &Stmt::new(
                    "SELECT column_name::text AS name, data_type::text AS type, is_nullable::text AS nullable
                     FROM information_schema.columns
                     WHERE table_schema = current_schema() AND table_name = :t",
                )
                .bind("t", &name),
            )?
            .iter()
            .map(|r| {
                Ok(ColumnShape {
                    name: r.get("name")?,
                    type_class: type_class(&r.get::<String>("type")?),
                    not_null: r.get::<String>("nullable")? == "NO",
                })
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        let rows = c.query(
            &Stmt::new(
                "SELECT i.relname::text AS index_name, a.attname::text AS column_name,
                        array_position(ix.indkey::int2[], a.attnum) AS pos
                 FROM pg_index ix
                 JOIN pg_class t ON t.oid = ix.indrelid
                 JOIN pg_class i ON i.oid = ix.indexrelid
                 JOIN pg_namespace ns ON ns.oid = t.relnamespace
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(ix.indkey::int2[])
                 WHERE ix.indisunique AND ns.nspname = current_schema() AND t.relname = :t
                 ORDER BY i.relname, pos",
            )
            .bind("t", &name),
        )?;
        let mut unique_keys: Vec<(String, Vec<String>)> = Vec::new();
        for r in rows {
            let index: String = r.get("index_name")?;
            let column: String = r.get("column_name")?;
            match unique_keys.last_mut() {
                Some((i, cols)) if *i == index => cols.push(column),
                _ => unique_keys.push((index, vec![column])),
            }
        }
        tables.push(TableShape {
            name,
            columns,
            unique_keys: unique_keys.into_iter().map(|(_, c)| c).collect(),
        });
    }
    Ok(finish(tables))
}
