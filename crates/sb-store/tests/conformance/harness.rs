//! Backends, a hand-moved clock and fixtures shared by every conformance test.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use sb_core::{Clock, Role};
use sb_sql::postgres::{PgExecutor, PgOptions};
use sb_sql::sqlite::{SqliteExecutor, SqliteOptions};
use sb_sql::{Backend, Conn, Db, Stmt};
use sb_store::users::{self, NewUser, User};
use sb_store::workspaces::{self, Workspace};
use sb_store::{Result, Store};

/// The environment variable that turns the PostgreSQL half on.
pub const PG_URL_VAR: &str = "SWITCHBOARD_TEST_PG_URL";

/// Where every test's clock starts (2023-11-14T22:13:20Z).
pub const T0: i64 = 1_700_000_000_000;

/// A clock that moves only when the test says so.
#[derive(Debug)]
pub struct FixedClock(AtomicI64);

impl FixedClock {
    pub fn new(now_ms: i64) -> Self {
        FixedClock(AtomicI64::new(now_ms))
    }

    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: i64) -> i64 {
        self.0.fetch_add(ms, Ordering::SeqCst) + ms
    }
}

impl Clock for FixedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a test body gets: a store over one backend and the clock behind it.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub store: Store,
    pub clock: Arc<FixedClock>,
    pub backend: Backend,
    origin: Origin,
}

/// Where a backend's data lives, so that a test can open it again.
#[derive(Clone, Debug)]
enum Origin {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

async fn open(origin: &Origin) -> Db {
    match origin {
        Origin::Sqlite(path) => Db::new(Arc::new(
            SqliteExecutor::open(&SqliteOptions::new(path)).expect("open SQLite"),
        )),
        Origin::Postgres { url, schema } => {
            let options = PgOptions {
                search_path: Some(schema.clone()),
                pool_size: 8,
                ..PgOptions::new(url.clone())
            };
            Db::new(Arc::new(
                PgExecutor::connect(&options).await.expect("connect to the test schema"),
            ))
        }
    }
}

impl Ctx {
    pub fn db(&self) -> &Db {
        &self.store.db
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Moves the clock forward and returns the new now.
    pub fn advance(&self, ms: i64) -> i64 {
        self.clock.advance(ms)
    }

    /// Puts the clock at `now_ms`.
    pub fn set_to(&self, now_ms: i64) {
        self.clock.set(now_ms)
    }

    /// Closes this handle and opens the same database again (same file or schema, same
    /// clock), as a restarted process would.
    pub async fn reopen(self) -> Ctx {
        self.store.db.close().await;
        let db = open(&self.origin).await;
        Ctx {
            store: Store::new(db, self.clock.clone()),
            ..self
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// A write transaction whose closure speaks `sb_store::Result`.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut dyn Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.store.db.write(f).await
    }

    /// A read snapshot whose closure speaks `sb_store::Result`.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut dyn Conn) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.store.db.read(f).await
    }

    /// `SELECT COUNT(*) AS n FROM … WHERE …` on a read snapshot.
    pub async fn count(&self, sql: &'static str) -> i64 {
        self.read(move |c| Ok(c.query_one(&Stmt::new(sql))?.get::<i64>("n")?))
            .await
            .unwrap_or_else(|e| panic!("[{}] {sql}: {e}", self.backend.name()))
    }

    pub async fn workspace(&self, name: &str) -> Workspace {
        let (name, now) = (name.to_owned(), self.now());
        self.write(move |c| workspaces::create(c, &name, now))
            .await
            .expect("create workspace")
    }

    pub async fn user(&self, workspace_id: &str, email: &str) -> User {
        let (ws, email, now) = (workspace_id.to_owned(), email.to_owned(), self.now());
        self.write(move |c| {
            users::create(
                c,
                &NewUser {
                    workspace_id: &ws,
                    email: &email,
                    name: "Test User",
                    role: Role::Agent,
                    password_hash: "not-a-real-hash",
                    is_owner: false,
                },
                now,
            )
        })
        .await
        .expect("create user")
    }
}

/// One backend with its clean-up: the SQLite file's directory, or the PostgreSQL schema.
pub struct TestDb {
    pub ctx: Ctx,
    cleanup: Cleanup,
}

enum Cleanup {
    Sqlite(tempfile::TempDir),
    Postgres { admin: Db, schema: String },
}

impl TestDb {
    /// A fresh SQLite database in a temporary file.
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("conformance.sqlite3");
        let origin = Origin::Sqlite(path);
        TestDb {
            ctx: ctx(open(&origin).await, origin),
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A fresh schema on the PostgreSQL server named by `SWITCHBOARD_TEST_PG_URL`, or `None`
    /// (after saying so on one line) when the variable is not set. A set variable whose
    /// server cannot be reached fails the test rather than skipping it.
    pub async fn postgres() -> Option<TestDb> {
        let Some(url) = std::env::var(PG_URL_VAR).ok().filter(|u| !u.trim().is_empty()) else {
            println!("PostgreSQL half skipped: {PG_URL_VAR} is not set");
            return None;
        };
        let admin = PgExecutor::connect(&PgOptions {
            pool_size: 1,
            ..PgOptions::new(url.clone())
        })
        .await
        .unwrap_or_else(|e| panic!("{PG_URL_VAR} is set but PostgreSQL is not reachable: {e}"));
        let admin = Db::new(Arc::new(admin));
        let schema = format!("sb_test_{:016x}", rand::random::<u64>());
        admin
            .execute(Stmt::new(format!("CREATE SCHEMA {schema}")))
            .await
            .expect("create test schema");
        let origin = Origin::Postgres {
            url,
            schema: schema.clone(),
        };
        Some(TestDb {
            ctx: ctx(open(&origin).await, origin),
            cleanup: Cleanup::Postgres { admin, schema },
        })
    }

    /// Closes the backend and removes what it created.
    pub async fn finish(self) {
        self.ctx.store.db.close().await;
        match self.cleanup {
            Cleanup::Sqlite(dir) => drop(dir),
            Cleanup::Postgres { admin, schema } => {
                if let Err(e) = admin.execute(Stmt::new(format!("DROP SCHEMA {schema} CASCADE"))).await {
                    eprintln!("could not drop test schema {schema}: {e}");
                }
                admin.close().await;
            }
        }
    }
}

fn ctx(db: Db, origin: Origin) -> Ctx {
    let clock = Arc::new(FixedClock::new(T0));
    Ctx {
        store: Store::new(db, clock.clone()),
        clock,
        backend: db_backend(&origin),
        origin,
    }
}

fn db_backend(origin: &Origin) -> Backend {
    match origin {
        Origin::Sqlite(_) => Backend::Sqlite,
        Origin::Postgres { .. } => Backend::Postgres,
    }
}

/// Whether the store is migrated before the body runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Migrated,
    Empty,
}

/// Runs `body` on SQLite, then on PostgreSQL when it is configured, each on a migrated
/// store of its own.
pub async fn for_each_backend<F, Fut>(body: F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    for_each_backend_from(Start::Migrated, body).await
}

/// Like [`for_each_backend`], choosing whether the store starts migrated.
pub async fn for_each_backend_from<F, Fut>(start: Start, body: F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_half(TestDb::sqlite().await, start, &body).await;
    if let Some(pg) = TestDb::postgres().await {
        run_half(pg, start, &body).await;
    }
}

/// Runs one half in a task of its own so that a failing assertion still drops the
/// PostgreSQL schema; the failure is then re-raised with the backend's name.
async fn run_half<F, Fut>(db: TestDb, start: Start, body: &F)
where
    F: Fn(Ctx) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let backend = db.ctx.backend.name();
    let outcome = match start {
        Start::Empty => tokio::spawn(body(db.ctx.clone())).await,
        Start::Migrated => match db.ctx.store.migrate().await {
            Ok(_) => tokio::spawn(body(db.ctx.clone())).await,
            Err(e) => {
                db.finish().await;
                panic!("[{backend}] migrate: {e}");
            }
        },
    };
    db.finish().await;
    if let Err(e) = outcome {
        eprintln!("[{backend}] half failed");
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("[{backend}] test task did not finish: {e}"),
        }
    }
}

/// A closure's panic or error message with the backend's name, for assertions.
pub fn tag(ctx: &Ctx, what: &str) -> String {
    format!("[{}] {what}", ctx.backend.name())
}
