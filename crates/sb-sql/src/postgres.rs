//! PostgreSQL executor: tokio-postgres + deadpool-postgres. Transaction closures are
//! synchronous, so each runs on a blocking thread that drives its statements with
//! `Handle::block_on`; the connection itself stays on the async runtime.

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures_util::StreamExt;
use tokio::runtime::Handle;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::db::run_guarded;
use crate::{Backend, Conn, Executor, Row, SqlError, Stmt, Value, Work, WorkError, WorkOutput};

#[derive(Debug, Clone)]
pub struct PgOptions {
    pub url: String,
    /// Tests run in a schema of their own; production leaves this unset.
    pub search_path: Option<String>,
    pub pool_size: usize,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PgOptions {
            url: url.into(),
            search_path: None,
            pool_size: 16,
        }
    }
}

pub struct PgExecutor {
    pool: Pool,
    config: tokio_postgres::Config,
    listeners: Mutex<Vec<tokio_postgres::Client>>,
}

fn unavailable(e: impl std::fmt::Display) -> SqlError {
    SqlError::Unavailable(e.to_string())
}

impl PgExecutor {
    pub async fn connect(options: &PgOptions) -> Result<Self, SqlError> {
        let mut config: tokio_postgres::Config = options
            .url
            .parse()
            .map_err(|e| SqlError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        if let Some(schema) = &options.search_path {
            config.options(format!("-c search_path={schema}"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .build()
            .map_err(unavailable)?;
        // Fail at start, with the server's own words, rather than at the first request.
        let client = pool.get().await.map_err(|e| {
            let detail = e.source().map(|s| s.to_string()).unwrap_or_default();
            SqlError::Unavailable(format!("cannot connect to PostgreSQL: {e} {detail}"))
        })?;
        client.simple_query("SELECT 1").await?;
        Ok(PgExecutor {
            pool,
            config,
            listeners: Mutex::new(Vec::new()),
        })
    }

    async fn run(&self, work: Work, read_only: bool) -> Result<WorkOutput, WorkError> {
        // Wait for a connection here, asynchronously, so that only as many blocking threads
        // run as there are connections.
        let client = self.pool.get().await.map_err(unavailable)?;
        let handle = Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut conn = PgConn {
                client: &client,
                handle: &handle,
                begin: if read_only { "BEGIN READ ONLY" } else { "BEGIN" },
                begun: false,
                failed: false,
            };
            let result = run_guarded(work, &mut conn);
            let begun = conn.begun;
            let end = match (&result, begun) {
                (_, false) => Ok(()),
                (Ok(_), true) => handle.block_on(client.batch_execute("COMMIT")),
                (Err(_), true) => handle.block_on(client.batch_execute("ROLLBACK")),
            };
            if let Err(e) = end {
                // The connection's transaction state is unknown: never hand it out again.
                let _ = deadpool_postgres::Object::take(client);
                return Err(WorkError::Sql(SqlError::from(e)));
            }
            result
        })
        .await
        .map_err(|e| WorkError::Sql(SqlError::Aborted(format!("database task failed: {e}"))))?
    }
}

#[async_trait]
impl Executor for PgExecutor {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn write(&self, work: Work) -> Result<WorkOutput, WorkError> {
        self.run(work, false).await
    }

    async fn read(&self, work: Work) -> Result<WorkOutput, WorkError> {
        self.run(work, true).await
    }

    async fn execute_one(&self, stmt: Stmt) -> Result<u64, SqlError> {
        let (rewritten, values) = stmt.prepare(Backend::Postgres)?;
        let client = self.pool.get().await.map_err(unavailable)?;
        let st = client.prepare_cached(&rewritten.sql).await?;
        let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| *v as &(dyn ToSql + Sync)).collect();
        Ok(client.execute(&st, &params).await?)
    }

    async fn ping(&self) -> Result<(), SqlError> {
        let client = self.pool.get().await.map_err(unavailable)?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn listen(&self, channel: &str) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        let (client, mut connection) = self.config.connect(NoTls).await.ok()?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let AsyncMessage::Notification(n) = message
                    && tx.send(n.payload().to_owned()).is_err()
                {
                    break;
                }
            }
        });
        // Channel names are ours (never user input); quote them anyway.
        client
            .batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "")))
            .await
            .ok()?;
        self.listeners.lock().expect("listeners lock").push(client);
        Some(rx)
    }

    async fn close(&self) {
        self.listeners.lock().expect("listeners lock").clear();
        self.pool.close();
    }
}

/// A unit of work on one pooled connection. `BEGIN` is sent together with the unit's first
/// statement (one round trip instead of two), and a unit that runs no statement costs none.
struct PgConn<'a> {
    client: &'a deadpool_postgres::Client,
    handle: &'a Handle,
    begin: &'static str,
    begun: bool,
    /// PostgreSQL refuses every statement after a failed one; we say so ourselves.
    failed: bool,
}

impl PgConn<'_> {
    fn prepared(&mut self, stmt: &Stmt) -> Result<(tokio_postgres::Statement, Vec<Value>), SqlError> {
        if self.failed {
            return Err(SqlError::Aborted(crate::error::EARLIER_FAILURE.into()));
        }
        let prepared = stmt.prepare(Backend::Postgres).and_then(|(rewritten, values)| {
            let st = self.handle.block_on(self.client.prepare_cached(&rewritten.sql))?;
            Ok((st, values.into_iter().cloned().collect()))
        });
        // A failed PREPARE ends the unit, as a failed statement does (and PostgreSQL would).
        self.failed = prepared.is_err();
        prepared
    }

    /// Runs `op` inside the transaction, opening it in the same round trip when needed.
    fn run<T>(
        &mut self,
        op: impl AsyncFnOnce(&tokio_postgres::Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T, SqlError> {
        if self.failed {
            return Err(SqlError::Aborted(crate::error::EARLIER_FAILURE.into()));
        }
        let client: &tokio_postgres::Client = self.client;
        let result = if self.begun {
            self.handle.block_on(op(client)).map_err(SqlError::from)
        } else {
            let (begin, r) = self
                .handle
                .block_on(async { tokio::join!(client.batch_execute(self.begin), op(client)) });
            self.begun = true;
            begin.map_err(SqlError::from).and(r.map_err(SqlError::from))
        };
        self.failed = result.is_err();
        result
    }
}

impl Conn for PgConn<'_> {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn execute(&mut self, stmt: &Stmt) -> Result<u64, SqlError> {
        let (st, values) = self.prepared(stmt)?;
        self.run(async |c| {
            let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            c.execute(&st, &params).await
        })
    }

    fn query(&mut self, stmt: &Stmt) -> Result<Vec<Row>, SqlError> {
        let (st, values) = self.prepared(stmt)?;
        let rows = self.run(async |c| {
            let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
            c.query(&st, &params).await
        })?;
        let columns: Arc<[String]> = st.columns().iter().map(|c| c.name().to_owned()).collect();
        rows.iter()
            .map(|r| {
                let values = (0..columns.len())
                    .map(|i| pg_value(r, i))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Row::new(columns.clone(), values))
            })
            .collect()
    }

    fn execute_script(&mut self, sql: &str) -> Result<(), SqlError> {
        self.run(async |c| c.batch_execute(sql).await)
    }
}

fn pg_value(row: &tokio_postgres::Row, i: usize) -> Result<Value, SqlError> {
    let column = &row.columns()[i];
    let decode = |e: tokio_postgres::Error| SqlError::Decode {
        table: "(query)".into(),
        column: column.name().into(),
        reason: e.to_string(),
    };
    let ty = column.type_();
    Ok(match *ty {
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)
            .map_err(decode)?
            .map_or(Value::Null, Value::Bool),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)
            .map_err(decode)?
            .map_or(Value::Null, |v| Value::I64(v.into())),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)
            .map_err(decode)?
            .map_or(Value::Null, |v| Value::I64(v.into())),
        Type::INT8 => row
            .try_get::<_, Option<i64>>(i)
            .map_err(decode)?
            .map_or(Value::Null, Value::I64),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)
            .map_err(decode)?
            .map_or(Value::Null, |v| Value::F64(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)
            .map_err(decode)?
            .map_or(Value::Null, Value::F64),
        Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => row
            .try_get::<_, Option<String>>(i)
            .map_err(decode)?
            .map_or(Value::Null, Value::Text),
        Type::BYTEA => row
            .try_get::<_, Option<Vec<u8>>>(i)
            .map_err(decode)?
            .map_or(Value::Null, Value::Bytes),
        _ => {
            return Err(SqlError::Decode {
                table: "(query)".into(),
                column: column.name().into(),
                reason: format!("unsupported PostgreSQL type {ty}; cast it in the query"),
            });
        }
    })
}

type BoxError = Box<dyn StdError + Sync + Send>;

/// Binds only to a column type that holds the value as it is; anything else is an error
/// (never a reinterpretation of the bytes). Write `CAST(:x AS BIGINT)` where PostgreSQL
/// cannot infer a parameter's type.
impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        let mismatch =
            || -> BoxError { format!("cannot bind a {} value to a parameter of type {ty}", self.kind()).into() };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Value::I64(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Value::F64(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(mismatch()),
            },
            Value::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            Value::Bytes(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            _ => Err(mismatch()),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
