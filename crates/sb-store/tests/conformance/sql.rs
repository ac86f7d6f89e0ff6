//! The SQL layer under the repositories: values, decoding errors, units of work and
//! constraint errors.

use std::collections::BTreeSet;

use sb_core::Role;
use sb_sql::{Backend, Conn, SqlError, Stmt};
use sb_store::users::{self, NewUser};
use sb_store::workspaces::{self, Workspace};
use sb_store::{StoreError, tokens};

use crate::harness::{Ctx, for_each_backend, tag};

fn scratch_ddl(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "CREATE TABLE scratch_values (
                id BIGINT NOT NULL PRIMARY KEY,
                n_int BIGINT,
                n_text TEXT,
                n_bool BOOLEAN,
                n_bytes BLOB,
                n_float REAL
            )"
        }
        Backend::Postgres => {
            "CREATE TABLE scratch_values (
                id BIGINT NOT NULL PRIMARY KEY,
                n_int BIGINT,
                n_text TEXT,
                n_bool BOOLEAN,
                n_bytes BYTEA,
                n_float DOUBLE PRECISION
            )"
        }
    }
}

type Values = (
    i64,
    Option<i64>,
    Option<String>,
    Option<bool>,
    Option<Vec<u8>>,
    Option<f64>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_round_trip() {
    for_each_backend(|t: Ctx| async move {
        let ddl = scratch_ddl(t.backend);
        t.write(move |c| Ok(c.execute_script(ddl)?))
            .await
            .expect("create the scratch table");

        let every_byte: Vec<u8> = (0..=255u8).collect();
        let rows: Vec<Values> = vec![
            (
                1,
                Some(i64::MAX),
                Some("héllo wörld — 你好, שלום, e\u{301}, 🎉 'quoted' :not_a_param".into()),
                Some(true),
                Some(vec![]),
                Some(1.5),
            ),
            (
                2,
                Some(i64::MIN),
                Some(String::new()),
                Some(false),
                Some(every_byte),
                Some(-f64::MAX),
            ),
            (
                3,
                Some(0),
                Some("\t\n\\ \"".into()),
                Some(true),
                Some(vec![0]),
                Some(f64::MIN_POSITIVE),
            ),
            (
                4,
                Some(-1),
                Some("x".repeat(10_000)),
                Some(false),
                Some(vec![0xff; 4096]),
                Some(0.1 + 0.2),
            ),
            (5, None, None, None, None, None),
        ];
        let written = rows.clone();
        t.write(move |c| {
            for (id, i, s, b, bytes, f) in written {
                c.execute(
                    &Stmt::new(
                        "INSERT INTO scratch_values (id, n_int, n_text, n_bool, n_bytes, n_float)
                         VALUES (:id, :i, :s, :b, :bytes, :f)",
                    )
                    .bind("id", id)
                    .bind("i", i)
                    .bind("s", s)
                    .bind("b", b)
                    .bind("bytes", bytes)
                    .bind("f", f),
                )?;
            }
            Ok(())
        })
        .await
        .expect("insert values");

        let read: Vec<Values> = t
            .read(|c| {
                let rows = c.query(&Stmt::new(
                    "SELECT id, n_int, n_text, n_bool, n_bytes, n_float FROM scratch_values ORDER BY id",
                ))?;
                let mut out = Vec::new();
                for r in rows {
                    out.push((
                        r.get_in("scratch_values", "id")?,
                        r.get_in("scratch_values", "n_int")?,
                        r.get_in("scratch_values", "n_text")?,
                        r.get_in("scratch_values", "n_bool")?,
                        r.get_in("scratch_values", "n_bytes")?,
                        r.get_in("scratch_values", "n_float")?,
                    ));
                }
                Ok(out)
            })
            .await
            .expect("read values back");
        assert_eq!(read.len(), rows.len(), "{}", tag(&t, "every row comes back"));
        for (got, want) in read.iter().zip(&rows) {
            assert_eq!(got, want, "{}", tag(&t, "row round-trips unchanged"));
        }

        // Parameters compare against stored values the same way on both backends.
        let found = t
            .read(|c| {
                Ok(c.query_one(
                    &Stmt::new(
                        "SELECT id FROM scratch_values WHERE n_int = :max AND n_bool = :yes AND n_bytes = :empty",
                    )
                    .bind("max", i64::MAX)
                    .bind("yes", true)
                    .bind("empty", Vec::<u8>::new()),
                )?
                .get::<i64>("id")?)
            })
            .await
            .expect("look a row up by its values");
        assert_eq!(found, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoding_errors_name_table_and_column() {
    for_each_backend(|t: Ctx| async move {
        let ddl = scratch_ddl(t.backend);
        t.write(move |c| {
            c.execute_script(ddl)?;
            Ok(c.execute(&Stmt::new(
                "INSERT INTO scratch_values (id, n_text) VALUES (1, 'not a number')",
            ))?)
        })
        .await
        .expect("create and fill the scratch table");

        let errors = t
            .read(|c| {
                let row = c.query_one(&Stmt::new("SELECT id, n_int, n_text FROM scratch_values"))?;
                Ok(vec![
                    row.get_in::<i64>("scratch_values", "n_text")
                        .expect_err("text read as an integer"),
                    row.get_in::<i64>("scratch_values", "n_int")
                        .expect_err("NULL read as a plain integer"),
                    row.get_in::<String>("scratch_values", "no_such_column")
                        .expect_err("missing column"),
                ])
            })
            .await
            .expect("read the row");
        for (e, column) in errors.iter().zip(["n_text", "n_int", "no_such_column"]) {
            match e {
                SqlError::Decode {
                    table,
                    column: c,
                    reason,
                } => {
                    assert_eq!(table, "scratch_values", "{}", tag(&t, "decode error names the table"));
                    assert_eq!(c, column, "{}", tag(&t, "decode error names the column"));
                    assert!(!reason.is_empty());
                    let text = e.to_string();
                    assert!(
                        text.contains("scratch_values") && text.contains(column),
                        "message names both: {text}"
                    );
                }
                other => panic!("{}: {other:?}", tag(&t, "expected SqlError::Decode")),
            }
        }

        // Repository structs (from_row!) name their own table.
        let err = t
            .read(|c| {
                Ok(c.fetch_all::<Workspace>(&Stmt::new("SELECT id, name FROM workspaces"))
                    .map(|_| ()))
            })
            .await
            .expect("query runs");
        t.workspace("acme").await;
        let err_with_row = t
            .read(|c| {
                Ok(c.fetch_all::<Workspace>(&Stmt::new("SELECT id, name FROM workspaces"))
                    .map(|_| ()))
            })
            .await
            .expect("query runs");
        assert!(err.is_ok(), "no rows, nothing to decode");
        match err_with_row {
            Err(SqlError::Decode { table, column, .. }) => {
                assert_eq!((table.as_str(), column.as_str()), ("workspaces", "created_at"));
            }
            other => panic!(
                "{}: {other:?}",
                tag(&t, "expected a decode error for the missing column")
            ),
        }
    })
    .await;
}

/// How unit `i` of the concurrent batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Commit,
    AppError,
    SqlError,
    Panic,
}

fn fate(i: usize) -> Fate {
    match i {
        100 => Fate::Panic,
        i if i % 20 == 0 => Fate::AppError,
        i if i % 10 == 0 => Fate::SqlError,
        _ => Fate::Commit,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_unit_of_work_rolls_back_only_itself() {
    const UNITS: usize = 200;
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let tasks: Vec<_> = (0..UNITS)
            .map(|i| {
                let db = t.db().clone();
                tokio::spawn(async move {
                    db.write(move |c: &mut dyn Conn| {
                        let insert =
                            Stmt::new("INSERT INTO workspaces (id, name, created_at) VALUES (:id, :name, :at)")
                                .bind("id", format!("unit-{i:03}"))
                                .bind("name", format!("unit {i}"))
                                .bind("at", now);
                        c.execute(&insert)?;
                        // A second row per unit, so a half-undone unit would show.
                        c.execute(&insert.clone().bind("id", format!("unit-{i:03}-b")))?;
                        match fate(i) {
                            Fate::Commit => Ok(i),
                            Fate::AppError => Err(StoreError::Invalid(format!("unit {i} gives up"))),
                            Fate::SqlError => {
                                c.execute(&insert)?; // the same id again
                                unreachable!("a duplicate primary key is rejected")
                            }
                            Fate::Panic => panic!("unit {i} panics on purpose (expected in this test)"),
                        }
                    })
                    .await
                })
            })
            .collect();

        let mut committed = BTreeSet::new();
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.expect("the unit's task finished");
            match (fate(i), result) {
                (Fate::Commit, Ok(n)) => {
                    assert_eq!(n, i);
                    committed.insert(format!("unit-{i:03}"));
                    committed.insert(format!("unit-{i:03}-b"));
                }
                (Fate::AppError, Err(StoreError::Invalid(_))) => {}
                (Fate::SqlError, Err(StoreError::Sql(e))) if e.is_unique_violation() => {}
                (Fate::Panic, Err(StoreError::Sql(SqlError::Aborted(_)))) => {}
                (f, r) => panic!("{}: unit {i} ({f:?}) ended with {r:?}", tag(&t, "unexpected outcome")),
            }
        }
        assert_eq!(committed.len(), 2 * (UNITS - UNITS / 10));

        let present: BTreeSet<String> = t
            .read(|c| {
                Ok(c.query(&Stmt::new("SELECT id FROM workspaces WHERE id LIKE 'unit-%'"))?
                    .iter()
                    .map(|r| r.get::<String>("id"))
                    .collect::<Result<_, _>>()?)
            })
            .await
            .expect("read the units' rows");
        let missing: Vec<_> = committed.difference(&present).collect();
        let extra: Vec<_> = present.difference(&committed).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: missing {missing:?}, left behind by failed units {extra:?}",
            tag(&t, "exactly the committed units' rows exist")
        );

        // The writer survived the panic and the failures.
        let ws = t.workspace("after the storm").await;
        assert_eq!(
            t.read(move |c| workspaces::get(c, &ws.id))
                .await
                .expect("read")
                .map(|w| w.name),
            Some("after the storm".into())
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violation_is_reported_as_such() {
    for_each_backend(|t: Ctx| async move {
        let insert = || Stmt::new("INSERT INTO workspaces (id, name, created_at) VALUES ('dup', 'first', 0)");
        t.write(move |c| Ok(c.execute(&insert())?)).await.expect("first insert");
        match t.write(move |c| Ok(c.execute(&insert())?)).await {
            Err(StoreError::Sql(e)) => {
                assert!(e.is_unique_violation(), "{}: {e:?}", tag(&t, "duplicate primary key"));
                assert!(matches!(e, SqlError::UniqueViolation(_)));
            }
            other => panic!("{}: {other:?}", tag(&t, "expected a unique violation")),
        }

        // A unique column other than the key, through a repository: a conflict.
        let ws = t.workspace("acme").await;
        t.user(&ws.id, "ana@example.com").await;
        let ws_id = ws.id.clone();
        let again = t
            .write(move |c| {
                users::create(
                    c,
                    &NewUser {
                        workspace_id: &ws_id,
                        email: "  ANA@Example.com ",
                        name: "Ana again",
                        role: Role::Admin,
                        password_hash: "x",
                        is_owner: false,
                    },
                    0,
                )
            })
            .await;
        assert!(
            matches!(again, Err(StoreError::Conflict(_))),
            "{}: {again:?}",
            tag(&t, "e-mail compares case-insensitively")
        );

        // Token digests are unique too.
        let user = t.user(&ws.id, "bo@example.com").await;
        let u = user.clone();
        t.write(move |c| tokens::create(c, &u, "first", "same-digest", 0))
            .await
            .expect("first token");
        match t
            .write(move |c| tokens::create(c, &user, "second", "same-digest", 0))
            .await
        {
            Err(StoreError::Sql(e)) if e.is_unique_violation() => {}
            other => panic!("{}: {other:?}", tag(&t, "duplicate token digest")),
        }

        // Other errors are not unique violations.
        match t
            .write(|c| Ok(c.execute(&Stmt::new("INSERT INTO no_such_table (id) VALUES (1)"))?))
            .await
        {
            Err(StoreError::Sql(e)) => assert!(!e.is_unique_violation(), "{e:?}"),
            other => panic!("{}: {other:?}", tag(&t, "expected an error")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_key_violation_is_reported_as_such() {
    for_each_backend(|t: Ctx| async move {
        let orphan = t
            .write(|c| {
                users::create(
                    c,
                    &NewUser {
                        workspace_id: "no-such-workspace",
                        email: "orphan@example.com",
                        name: "Orphan",
                        role: Role::Agent,
                        password_hash: "x",
                        is_owner: false,
                    },
                    0,
                )
            })
            .await;
        assert!(
            matches!(orphan, Err(StoreError::Sql(SqlError::ForeignKeyViolation(_)))),
            "{}: {orphan:?}",
            tag(&t, "a user needs an existing workspace")
        );
        assert_eq!(t.count("SELECT COUNT(*) AS n FROM users").await, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_writes_survive_reopening() {
    const UNITS: usize = 50;
    for_each_backend(|t: Ctx| async move {
        let now = t.now();
        let tasks: Vec<_> = (0..UNITS)
            .map(|i| {
                let db = t.db().clone();
                tokio::spawn(async move {
                    db.write(move |c| workspaces::create(c, &format!("durable {i}"), now + i as i64))
                        .await
                })
            })
            .collect();
        let mut acknowledged = BTreeSet::new();
        for task in tasks {
            acknowledged.insert(task.await.expect("task").expect("write").id);
        }

        // Every acknowledged unit is on disk once the handle is closed and opened again.
        let t = t.reopen().await;
        let present: BTreeSet<String> = t
            .read(|c| {
                Ok(c.query(&Stmt::new("SELECT id FROM workspaces"))?
                    .iter()
                    .map(|r| r.get::<String>("id"))
                    .collect::<Result<_, _>>()?)
            })
            .await
            .expect("read after reopening");
        assert_eq!(present, acknowledged, "{}", tag(&t, "acknowledged writes are durable"));
        let again = t.store.migrate().await.expect("migrate after reopening");
        assert!(again.is_empty(), "{}", tag(&t, "nothing to apply after a restart"));
        t.db().close().await;
    })
    .await;
}
