//! Every database query lives here. Two backends, chosen at run time: SQLite (the embedded default)
//! and PostgreSQL. diesel-async has no MultiConnection, so a pooled connection is the `Conn` enum
//! and each query is written once inside `run!`, which type-checks it against both backends.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::sqlite::SqliteConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::AsyncPgConnection;

pub mod cache_state;
pub mod caption_settings;
pub mod migrate;
pub mod oauth_apps;
pub mod outbox;
pub mod platforms;
pub mod schema;
pub mod sessions;
pub mod throttle;
pub mod users;

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;
type PgPool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;
type SqlitePool = bb8::Pool<AsyncDieselConnectionManager<SqliteConn>>;
type PgPooled = bb8::PooledConnection<'static, AsyncDieselConnectionManager<AsyncPgConnection>>;
type SqlitePooled = bb8::PooledConnection<'static, AsyncDieselConnectionManager<SqliteConn>>;

/// Runs one query, written once, on whichever backend the connection is.
/// `run!(conn, |c| users::table.count().get_result::<i64>(c).await)`
#[macro_export]
macro_rules! run {
    ($conn:expr, |$c:ident| $body:expr) => {{
        let conn: &mut $crate::store::Conn = $conn;
        conn.count_statement();
        match &mut conn.inner {
            $crate::store::ConnInner::Pg(pooled) => {
                let $c: &mut diesel_async::AsyncPgConnection = &mut **pooled;
                $body
            }
            $crate::store::ConnInner::Sqlite(pooled) => {
                let $c: &mut $crate::store::SqliteConn = &mut *pooled;
                $body
            }
        }
    }};
}

/// Runs `$body` (an expression using `$conn`, returning `Result<T, StoreError>`) in a write
/// transaction: `BEGIN IMMEDIATE` on SQLite, so a writer never upgrades a read lock and meets
/// "database is locked"; a plain transaction on PostgreSQL.
#[macro_export]
macro_rules! write_tx {
    ($conn:ident, $body:expr) => {{
        $conn.begin_write().await?;
        let result: Result<_, $crate::store::StoreError> = async { $body }.await;
        match result {
            Ok(value) => {
                $conn.commit().await?;
                Ok(value)
            }
            Err(error) => {
                $conn.rollback().await;
                Err(error)
            }
        }
    }};
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable")]
    Pool(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("database query failed")]
    Query(#[from] diesel::result::Error),
    #[error("could not connect to the database")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            StoreError::Query(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _
            ))
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
enum PoolInner {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// The connection pool, plus counters that tests and /metrics read: how many connections were
/// checked out and how many statements were run (a warm page view must show zero of both).
#[derive(Clone)]
pub struct Db {
    pool: PoolInner,
    url: String,
    stats: Arc<DbStats>,
}

#[derive(Default)]
pub struct DbStats {
    pub checkouts: AtomicU64,
    pub statements: AtomicU64,
}

pub enum ConnInner {
    // Boxed: a PostgreSQL connection is several times the size of a SQLite one.
    Pg(Box<PgPooled>),
    Sqlite(SqlitePooled),
}

pub struct Conn {
    pub inner: ConnInner,
    stats: Arc<DbStats>,
}

impl Conn {
    pub fn count_statement(&self) {
        self.stats.statements.fetch_add(1, Ordering::Relaxed);
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            ConnInner::Pg(_) => Backend::Postgres,
            ConnInner::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub async fn begin_write(&mut self) -> Result<(), StoreError> {
        use diesel_async::TransactionManager;
        self.count_statement();
        match &mut self.inner {
            ConnInner::Pg(c) => {
                diesel_async::AnsiTransactionManager::begin_transaction(&mut ***c).await?;
            }
            ConnInner::Sqlite(c) => {
                c.spawn_blocking(|inner| {
                    diesel::connection::AnsiTransactionManager::begin_transaction_sql(
                        inner,
                        "BEGIN IMMEDIATE",
                    )
                })
                .await?;
            }
        }
        Ok(())
    }

    pub async fn commit(&mut self) -> Result<(), StoreError> {
        use diesel_async::{AsyncConnection, TransactionManager};
        self.count_statement();
        match &mut self.inner {
            ConnInner::Pg(c) => {
                <AsyncPgConnection as AsyncConnection>::TransactionManager::commit_transaction(
                    &mut ***c,
                )
                .await?
            }
            ConnInner::Sqlite(c) => {
                <SqliteConn as AsyncConnection>::TransactionManager::commit_transaction(&mut **c)
                    .await?
            }
        }
        Ok(())
    }

    /// Rolls back; a failure here leaves the connection marked broken, and the pool drops it.
    pub async fn rollback(&mut self) {
        use diesel_async::{AsyncConnection, TransactionManager};
        self.count_statement();
        let result = match &mut self.inner {
            ConnInner::Pg(c) => {
                <AsyncPgConnection as AsyncConnection>::TransactionManager::rollback_transaction(
                    &mut ***c,
                )
                .await
            }
            ConnInner::Sqlite(c) => {
                <SqliteConn as AsyncConnection>::TransactionManager::rollback_transaction(&mut **c)
                    .await
            }
        };
        if let Err(error) = result {
            tracing::warn!(error = %error, "rollback failed");
        }
    }
}

impl Db {
    /// Builds the pool without connecting; the first query connects.
    pub async fn connect(url: &str, max_size: u32) -> Result<Db, StoreError> {
        let stats = Arc::new(DbStats::default());
        let pool = if is_postgres_url(url) {
            let mut config = ManagerConfig::<AsyncPgConnection>::default();
            config.recycling_method = RecyclingMethod::Fast;
            let manager = AsyncDieselConnectionManager::new_with_config(url, config);
            PoolInner::Pg(
                bb8::Pool::builder()
                    .max_size(max_size)
                    .connection_timeout(Duration::from_secs(5))
                    .test_on_check_out(false)
                    .build_unchecked(manager),
            )
        } else {
            let mut config = ManagerConfig::<SqliteConn>::default();
            config.recycling_method = RecyclingMethod::Fast;
            config.custom_setup = Box::new(|url| Box::pin(establish_sqlite(url.to_owned())));
            let manager = AsyncDieselConnectionManager::new_with_config(url, config);
            PoolInner::Sqlite(
                bb8::Pool::builder()
                    .max_size(max_size)
                    .connection_timeout(Duration::from_secs(5))
                    .test_on_check_out(false)
                    .build_unchecked(manager),
            )
        };
        Ok(Db {
            pool,
            url: url.to_owned(),
            stats,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            PoolInner::Pg(_) => Backend::Postgres,
            PoolInner::Sqlite(_) => Backend::Sqlite,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn stats(&self) -> &DbStats {
        &self.stats
    }

    /// The same pool, counting into separate statistics: for background tasks (outbox drain,
    /// sweep), so the request-path counters say what requests cost.
    pub fn background(&self) -> Db {
        Db {
            pool: self.pool.clone(),
            url: self.url.clone(),
            stats: Arc::new(DbStats::default()),
        }
    }

    pub async fn conn(&self) -> Result<Conn, StoreError> {
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        let inner = match &self.pool {
            PoolInner::Pg(pool) => ConnInner::Pg(Box::new(
                pool.get_owned()
                    .await
                    .map_err(|e| StoreError::Pool(Box::new(e)))?,
            )),
            PoolInner::Sqlite(pool) => ConnInner::Sqlite(
                pool.get_owned()
                    .await
                    .map_err(|e| StoreError::Pool(Box::new(e)))?,
            ),
        };
        Ok(Conn {
            inner,
            stats: self.stats.clone(),
        })
    }

    /// `SELECT 1`, for /readyz.
    pub async fn ping(&self) -> Result<(), StoreError> {
        use diesel_async::RunQueryDsl;
        let mut conn = self.conn().await?;
        run!(&mut conn, |c| diesel::sql_query("SELECT 1")
            .execute(c)
            .await)?;
        Ok(())
    }
}

pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The SQLite URL for a database file in `dir`.
pub fn sqlite_path_in(dir: &Path) -> String {
    dir.join("fedialt.sqlite3").display().to_string()
}

/// Every SQLite connection: WAL (readers never block the writer), a busy timeout (writers queue
/// rather than fail), foreign keys on.
async fn establish_sqlite(url: String) -> diesel::ConnectionResult<SqliteConn> {
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut conn = SqliteConnection::establish(&url)?;
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
        )
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        Ok(SyncConnectionWrapper::new(conn))
    })
    .await
    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?
}

/// Seconds since the Unix epoch: every timestamp column holds this.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
