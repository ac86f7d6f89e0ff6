//! The `Db` handle, the `Executor` trait both backends implement, and the `Conn` trait
//! that transaction closures use.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{FromRow, Row, SqlError, Stmt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A connection inside a transaction (or a read snapshot). Synchronous on purpose: see the
/// crate documentation.
pub trait Conn {
    fn backend(&self) -> Backend;
    /// Runs one statement and returns the number of rows it changed.
    fn execute(&mut self, stmt: &Stmt) -> Result<u64, SqlError>;
    fn query(&mut self, stmt: &Stmt) -> Result<Vec<Row>, SqlError>;
    /// Runs several `;`-separated statements without parameters (migrations).
    fn execute_script(&mut self, sql: &str) -> Result<(), SqlError>;
    /// Whether other work waits for this transaction to end (one writer: SQLite). Long
    /// background work may commit what it has done and leave the rest for later.
    fn others_waiting(&self) -> bool {
        false
    }
}

impl dyn Conn + '_ {
    pub fn query_opt(&mut self, stmt: &Stmt) -> Result<Option<Row>, SqlError> {
        Ok(self.query(stmt)?.into_iter().next())
    }

    pub fn query_one(&mut self, stmt: &Stmt) -> Result<Row, SqlError> {
        self.query_opt(stmt)?.ok_or(SqlError::NoRows)
    }

    pub fn fetch_all<T: FromRow>(&mut self, stmt: &Stmt) -> Result<Vec<T>, SqlError> {
        self.query(stmt)?.iter().map(T::from_row).collect()
    }

    pub fn fetch_opt<T: FromRow>(&mut self, stmt: &Stmt) -> Result<Option<T>, SqlError> {
        self.query_opt(stmt)?.as_ref().map(T::from_row).transpose()
    }
}

pub type WorkOutput = Box<dyn Any + Send>;

/// Why a unit of work did not commit: the database said no, or the closure returned its
/// own error (carried untyped through the executor and restored by `Db`).
pub enum WorkError {
    Sql(SqlError),
    App(Box<dyn Any + Send>),
}

impl From<SqlError> for WorkError {
    fn from(e: SqlError) -> Self {
        WorkError::Sql(e)
    }
}

pub type Work = Box<dyn FnOnce(&mut dyn Conn) -> Result<WorkOutput, WorkError> + Send>;

/// What a backend provides. Repositories never see this; they use `Db`.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    fn backend(&self) -> Backend;
    /// Runs `work` in a write transaction; it commits when `work` returns `Ok`.
    async fn write(&self, work: Work) -> Result<WorkOutput, WorkError>;
    /// Runs `work` in a write transaction that may wait while `write` work is queued: bulk
    /// work nobody is waiting on (processing what ingest stored), so acknowledgements come
    /// first. The default treats it like `write`.
    async fn write_background(&self, work: Work) -> Result<WorkOutput, WorkError> {
        self.write(work).await
    }
    /// Runs `work` like `write`, for work that changes rows with at most one statement, its
    /// last: a statement that fails undoes itself, so a backend that commits units in groups
    /// may skip the savepoint that would isolate this one. The default treats it like `write`.
    async fn write_single(&self, work: Work) -> Result<WorkOutput, WorkError> {
        self.write(work).await
    }
    /// Runs `work` on a read snapshot.
    async fn read(&self, work: Work) -> Result<WorkOutput, WorkError>;
    /// Runs one statement as its own transaction. The default goes through `write`; a backend
    /// may do it in fewer round trips (PostgreSQL: autocommit, no blocking thread).
    async fn execute_one(&self, stmt: Stmt) -> Result<u64, SqlError> {
        let work: Work = Box::new(move |c| Ok(Box::new(c.execute(&stmt)?) as WorkOutput));
        match self.write(work).await {
            Ok(v) => Ok(*v.downcast::<u64>().expect("execute returns u64")),
            Err(WorkError::Sql(e)) => Err(e),
            Err(WorkError::App(_)) => Err(SqlError::Other("statement failed".into())),
        }
    }
    /// A cheap round trip that proves the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), SqlError>;
    /// Wake-ups published with `notify` inside transactions, where the backend has them
    /// (PostgreSQL `LISTEN`); `None` where the process itself is the only writer.
    async fn listen(&self, channel: &str) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>>;
    /// Stops background threads and connections; later calls fail.
    async fn close(&self);
}

/// The handle every repository holds.
#[derive(Clone)]
pub struct Db {
    executor: Arc<dyn Executor>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({})", self.executor.backend().name())
    }
}

impl Db {
    pub fn new(executor: Arc<dyn Executor>) -> Self {
        Db { executor }
    }

    pub fn backend(&self) -> Backend {
        self.executor.backend()
    }

    pub fn executor(&self) -> &Arc<dyn Executor> {
        &self.executor
    }

    /// Runs `f` in a write transaction. `Err` from `f` rolls back only `f`'s work.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut dyn Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<SqlError> + Send + 'static,
    {
        unbox(self.executor.write(boxed(f)).await)
    }

    /// Runs `f` in a write transaction that yields to `write` work (see
    /// [`Executor::write_background`]); for bulk work nobody is waiting on.
    pub async fn write_background<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut dyn Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<SqlError> + Send + 'static,
    {
        unbox(self.executor.write_background(boxed(f)).await)
    }

    /// Runs `f` in a write transaction, where `f` changes rows with at most one statement and
    /// runs nothing after it (an insert, then a read when it inserted nothing). Cheaper than
    /// `write` when many such units commit together; a second change is refused.
    pub async fn write_single<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut dyn Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<SqlError> + Send + 'static,
    {
        unbox(self.executor.write_single(boxed(f)).await)
    }

    /// Runs `f` on a read snapshot.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut dyn Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<SqlError> + Send + 'static,
    {
        unbox(self.executor.read(boxed(f)).await)
    }

    /// One statement, committed on its own (the cheapest durable write).
    pub async fn execute(&self, stmt: Stmt) -> Result<u64, SqlError> {
        self.executor.execute_one(stmt).await
    }

    pub async fn query(&self, stmt: Stmt) -> Result<Vec<Row>, SqlError> {
        self.read(move |c| c.query(&stmt)).await
    }

    pub async fn fetch_all<T: FromRow + Send + 'static>(&self, stmt: Stmt) -> Result<Vec<T>, SqlError> {
        self.read(move |c| c.fetch_all(&stmt)).await
    }

    pub async fn fetch_opt<T: FromRow + Send + 'static>(&self, stmt: Stmt) -> Result<Option<T>, SqlError> {
        self.read(move |c| c.fetch_opt(&stmt)).await
    }

    pub async fn ping(&self) -> Result<(), SqlError> {
        self.executor.ping().await
    }

    pub async fn listen(&self, channel: &str) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.executor.listen(channel).await
    }

    pub async fn close(&self) {
        self.executor.close().await
    }
}

fn boxed<T, E, F>(f: F) -> Work
where
    F: FnOnce(&mut dyn Conn) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    Box::new(move |conn: &mut dyn Conn| match f(conn) {
        Ok(v) => Ok(Box::new(v) as WorkOutput),
        Err(e) => Err(WorkError::App(Box::new(e))),
    })
}

fn unbox<T: 'static, E: From<SqlError> + 'static>(r: Result<WorkOutput, WorkError>) -> Result<T, E> {
    match r {
        Ok(v) => Ok(*v.downcast::<T>().expect("work output has the closure's type")),
        Err(WorkError::Sql(e)) => Err(E::from(e)),
        Err(WorkError::App(e)) => Err(*e.downcast::<E>().expect("work error has the closure's type")),
    }
}

/// Runs a closure and turns a panic into an error, so one bad closure cannot take down a
/// shared writer thread.
pub(crate) fn run_guarded(work: Work, conn: &mut dyn Conn) -> Result<WorkOutput, WorkError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn))) {
        Ok(r) => r,
        Err(_) => Err(WorkError::Sql(SqlError::Aborted(
            "the transaction closure panicked".into(),
        ))),
    }
}
