//! Migrations and the schema they build.

use sb_sql::schema::{self, TableShape};
use sb_sql::{SqlError, Stmt};
use sb_store::{StoreError, migrations};

use crate::harness::{Ctx, Start, T0, TestDb, for_each_backend, for_each_backend_from, tag};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_record_checksums() {
    for_each_backend_from(Start::Empty, |t: Ctx| async move {
        let known = migrations::for_backend(t.backend);
        let versions: Vec<i64> = known.iter().map(|m| m.version).collect();

        let first = t.store.migrate().await.expect("first migrate");
        assert_eq!(first, versions, "{}", tag(&t, "the first run applies every migration"));
        t.advance(60_000);
        let second = t.store.migrate().await.expect("second migrate");
        assert!(
            second.is_empty(),
            "{}: {second:?}",
            tag(&t, "the second run applies nothing")
        );

        let recorded = t
            .read(|c| {
                let rows = c.query(&Stmt::new(
                    "SELECT version, name, checksum, applied_at FROM sb_migrations ORDER BY version",
                ))?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.get_in::<i64>("sb_migrations", "version")?,
                            r.get_in::<String>("sb_migrations", "name")?,
                            r.get_in::<String>("sb_migrations", "checksum")?,
                            r.get_in::<i64>("sb_migrations", "applied_at")?,
                        ))
                    })
                    .collect::<Result<Vec<_>, SqlError>>()
                    .map_err(StoreError::from)
            })
            .await
            .expect("read sb_migrations");
        let expected: Vec<_> = known
            .iter()
            .map(|m| (m.version, m.name.to_owned(), m.checksum(), T0))
            .collect();
        assert_eq!(
            recorded,
            expected,
            "{}",
            tag(&t, "one row per migration, stamped by the first run")
        );
        assert!(
            recorded
                .iter()
                .all(|(_, _, sum, _)| sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit())),
            "checksums are hex SHA-256"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_migration_refuses_to_start() {
    for_each_backend(|t: Ctx| async move {
        let changed = t
            .write(|c| {
                Ok(c.execute(
                    &Stmt::new("UPDATE sb_migrations SET checksum = :sum WHERE version = 1")
                        .bind("sum", "0".repeat(64)),
                )?)
            })
            .await
            .expect("tamper with the checksum");
        assert_eq!(changed, 1);
        match t.store.migrate().await {
            Err(StoreError::Sql(SqlError::MigrationChanged { version, name })) => {
                assert_eq!(version, 1);
                assert_eq!(name, migrations::for_backend(t.backend)[0].name);
            }
            other => panic!("{}: {other:?}", tag(&t, "expected MigrationChanged")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_migration_refuses_to_start() {
    for_each_backend(|t: Ctx| async move {
        t.write(|c| {
            Ok(c.execute(&Stmt::new(
                "INSERT INTO sb_migrations (version, name, checksum, applied_at) VALUES (9999, 'from_the_future', 'x', 0)",
            ))?)
        })
        .await
        .expect("record a migration this binary does not know");
        match t.store.migrate().await {
            Err(StoreError::Sql(SqlError::UnknownMigration { version: 9999 })) => {}
            other => panic!("{}: {other:?}", tag(&t, "expected UnknownMigration")),
        }
    })
    .await;
}

const FOUNDATION_TABLES: [&str; 7] = [
    "workspaces",
    "users",
    "sessions",
    "api_tokens",
    "audit_log",
    "jobs",
    "timers",
];

async fn migrated_shape(db: TestDb) -> Vec<TableShape> {
    let result = async {
        db.ctx.store.migrate().await.map_err(|e| e.to_string())?;
        schema::shape(db.ctx.db()).await.map_err(|e| e.to_string())
    }
    .await;
    let backend = db.ctx.backend.name();
    db.finish().await;
    result.unwrap_or_else(|e| panic!("[{backend}] migrate and read the shape: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_equivalent_across_backends() {
    let sqlite = migrated_shape(TestDb::sqlite().await).await;
    let names: Vec<&str> = sqlite.iter().map(|t| t.name.as_str()).collect();
    for table in FOUNDATION_TABLES.iter().chain(&["sb_migrations"]) {
        assert!(names.contains(table), "SQLite schema lacks `{table}`: {names:?}");
    }
    let keys = |name: &str| {
        sqlite
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.unique_keys.clone())
            .unwrap_or_default()
    };
    assert!(
        keys("users").contains(&vec!["email".to_owned()]),
        "users.email is unique: {:?}",
        keys("users")
    );
    assert!(
        keys("jobs").contains(&vec!["dedupe_key".to_owned()]),
        "jobs.dedupe_key is unique"
    );
    assert!(
        keys("timers").contains(&vec!["timer_key".to_owned()]),
        "timers.timer_key is unique"
    );
    for t in &sqlite {
        assert!(
            t.columns.iter().all(|c| c.type_class != "other"),
            "{}: every column has a known type class",
            t.name
        );
    }

    let Some(pg) = TestDb::postgres().await else {
        return;
    };
    let postgres = migrated_shape(pg).await;
    if sqlite != postgres {
        panic!("the migrated schemas differ:\n{}", shape_diff(&sqlite, &postgres));
    }
}

/// Table by table, what only one side has or where the two disagree.
fn shape_diff(sqlite: &[TableShape], postgres: &[TableShape]) -> String {
    let mut names: Vec<&str> = sqlite.iter().chain(postgres).map(|t| t.name.as_str()).collect();
    names.sort();
    names.dedup();
    let mut out = String::new();
    for name in names {
        let a = sqlite.iter().find(|t| t.name == name);
        let b = postgres.iter().find(|t| t.name == name);
        match (a, b) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => {
                out += &format!("table `{name}`:\n");
                let mut cols: Vec<&str> = a.columns.iter().chain(&b.columns).map(|c| c.name.as_str()).collect();
                cols.sort();
                cols.dedup();
                for col in cols {
                    let ca = a.columns.iter().find(|c| c.name == col);
                    let cb = b.columns.iter().find(|c| c.name == col);
                    if ca != cb {
                        out += &format!("  column `{col}`: sqlite {ca:?} / postgres {cb:?}\n");
                    }
                }
                if a.unique_keys != b.unique_keys {
                    out += &format!(
                        "  unique keys: sqlite {:?} / postgres {:?}\n",
                        a.unique_keys, b.unique_keys
                    );
                }
            }
            (Some(_), None) => out += &format!("table `{name}`: only in sqlite\n"),
            (None, Some(_)) => out += &format!("table `{name}`: only in postgres\n"),
            (None, None) => {}
        }
    }
    out
}
