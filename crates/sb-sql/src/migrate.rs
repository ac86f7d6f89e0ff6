//! Forward-only migrations: one directory per backend with the same versions; each file's
//! SHA-256 is recorded, and a changed file stops the start.

use sha2::{Digest, Sha256};

use crate::{Backend, Conn, Db, SqlError, Stmt};

#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// Both backends serialise migrators on this lock (PostgreSQL advisory lock key).
const MIGRATION_LOCK: i64 = 0x0053_5742_444d_4947; // "SWBDMIG"

fn prologue(c: &mut dyn Conn) -> Result<(), SqlError> {
    if c.backend() == Backend::Postgres {
        c.execute(&Stmt::new("SELECT pg_advisory_xact_lock(:key)").bind("key", MIGRATION_LOCK))?;
    }
    c.execute_script(
        "CREATE TABLE IF NOT EXISTS sb_migrations (
            version BIGINT NOT NULL PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )",
    )
}

fn applied(c: &mut dyn Conn) -> Result<Vec<(i64, String)>, SqlError> {
    c.query(&Stmt::new(
        "SELECT version, checksum FROM sb_migrations ORDER BY version",
    ))?
    .iter()
    .map(|r| {
        Ok((
            r.get_in("sb_migrations", "version")?,
            r.get_in("sb_migrations", "checksum")?,
        ))
    })
    .collect()
}

fn check(known: &[Migration], applied: &[(i64, String)]) -> Result<(), SqlError> {
    for (version, checksum) in applied {
        match known.iter().find(|m| m.version == *version) {
            None => return Err(SqlError::UnknownMigration { version: *version }),
            Some(m) if m.checksum() != *checksum => {
                return Err(SqlError::MigrationChanged {
                    version: m.version,
                    name: m.name.to_owned(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Applies every migration not yet applied, each in its own transaction, and returns the
/// versions applied now. Refuses (before applying anything) when an applied file changed.
pub async fn run(db: &Db, migrations: &'static [Migration], now_ms: i64) -> Result<Vec<i64>, SqlError> {
    db.write(move |c| {
        prologue(c)?;
        check(migrations, &applied(c)?)
    })
    .await?;
    let mut done = Vec::new();
    for m in migrations {
        let m = *m;
        let ran = db
            .write(move |c| {
                prologue(c)?;
                let present = applied(c)?;
                if present.iter().any(|(v, _)| *v == m.version) {
                    return Ok(false);
                }
                c.execute_script(m.sql)?;
                c.execute(
                    &Stmt::new(
                        "INSERT INTO sb_migrations (version, name, checksum, applied_at)
                         VALUES (:version, :name, :checksum, :at)",
                    )
                    .bind("version", m.version)
                    .bind("name", m.name)
                    .bind("checksum", m.checksum())
                    .bind("at", now_ms),
                )?;
                Ok::<_, SqlError>(true)
            })
            .await?;
        if ran {
            tracing::info!(version = m.version, name = m.name, "applied migration");
            done.push(m.version);
        }
    }
    Ok(done)
}
