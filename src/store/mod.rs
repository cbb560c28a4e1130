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

pub mod admin_settings;
pub mod audit;
pub mod breaker;
pub mod cache_state;
pub mod caption_settings;
pub mod drafts;
pub mod migrate;
pub mod oauth_apps;
pub mod oauth_pending;
pub mod outbox;
pub mod platforms;
pub mod post_jobs;
pub mod publish;
pub mod runs;
pub mod schema;
pub mod sessions;
pub mod throttle;
pub mod users;
pub mod watches;

pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;
type PgPool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;
type SqlitePool = bb8::Pool<AsyncDieselConnectionManager<SqliteConn>>;
type PgPooled = bb8::PooledConnection<'static, AsyncDieselConnectionManager<AsyncPgConnection>>;
type SqlitePooled = bb8::PooledConnection<'static, AsyncDieselConnectionManager<SqliteConn>>;

/// Runs one query, written once, on whichever backend the connection is, under the database's
/// breaker (see breaker.rs): it ends at once when the breaker opens, and a deadline bounds it.
/// `run!(conn, |c| users::table.count().get_result::<i64>(c).await)`
#[macro_export]
macro_rules! run {
    ($conn:expr, |$c:ident| $body:expr) => {{
        let conn: &mut $crate::store::Conn = $conn;
        conn.count_statement();
        let watch = conn.watch();
        watch
            .guard(async {
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
            })
            .await
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
    /// The breaker is open, or a statement ended because the database went away.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed")]
    Query(#[source] diesel::result::Error),
    #[error("could not connect to the database")]
    Connect(#[from] diesel::ConnectionError),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        if breaker::is_outage(&error) {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Query(error)
        }
    }
}

impl StoreError {
    /// The database is away (not a bad statement): people get "try again shortly".
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Pool(_) | StoreError::Connect(_) | StoreError::Unavailable(_)
        )
    }

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
    shared: Arc<Shared>,
    stats: Arc<DbStats>,
}

/// What every clone of a Db shares: the pool (replaced by a fresh one when the breaker closes),
/// the breaker, and how to build a pool again.
struct Shared {
    pool: std::sync::RwLock<PoolInner>,
    url: String,
    max_size: u32,
    timeout: Duration,
    backend: Backend,
    breaker: breaker::DbBreaker,
}

/// The breaker and deadline a connection's statements run under.
#[derive(Clone)]
pub struct Watch(Arc<Shared>);

impl Watch {
    pub async fn guard<T>(
        &self,
        statement: impl std::future::Future<Output = Result<T, diesel::result::Error>>,
    ) -> Result<T, diesel::result::Error> {
        let cancellable = self.0.backend == Backend::Postgres;
        let (result, opened) =
            breaker::guard(&self.0.breaker, self.0.timeout, cancellable, statement).await;
        if opened {
            spawn_probe(self.0.clone());
        }
        result
    }
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
    shared: Arc<Shared>,
}

impl Conn {
    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    pub fn watch(&self) -> Watch {
        Watch(self.shared.clone())
    }

    pub fn count_statement(&self) {
        self.stats.statements.fetch_add(1, Ordering::Relaxed);
    }

    pub async fn begin_write(&mut self) -> Result<(), StoreError> {
        use diesel_async::TransactionManager;
        self.count_statement();
        let watch = self.watch();
        watch
            .guard(async {
                match &mut self.inner {
                    ConnInner::Pg(c) => {
                        diesel_async::AnsiTransactionManager::begin_transaction(&mut ***c).await
                    }
                    ConnInner::Sqlite(c) => {
                        c.spawn_blocking(|inner| {
                            diesel::connection::AnsiTransactionManager::begin_transaction_sql(
                                inner,
                                "BEGIN IMMEDIATE",
                            )
                        })
                        .await
                    }
                }
            })
            .await?;
        Ok(())
    }

    pub async fn commit(&mut self) -> Result<(), StoreError> {
        use diesel_async::{AsyncConnection, TransactionManager};
        self.count_statement();
        let watch = self.watch();
        watch
            .guard(async {
                match &mut self.inner {
                    ConnInner::Pg(c) => {
                        <AsyncPgConnection as AsyncConnection>::TransactionManager::commit_transaction(
                            &mut ***c,
                        )
                        .await
                    }
                    ConnInner::Sqlite(c) => {
                        <SqliteConn as AsyncConnection>::TransactionManager::commit_transaction(
                            &mut **c,
                        )
                        .await
                    }
                }
            })
            .await?;
        Ok(())
    }

    /// Rolls back; a failure here leaves the connection marked broken, and the pool drops it.
    pub async fn rollback(&mut self) {
        use diesel_async::{AsyncConnection, TransactionManager};
        self.count_statement();
        let watch = self.watch();
        let result = watch
            .guard(async {
                match &mut self.inner {
                    ConnInner::Pg(c) => {
                        <AsyncPgConnection as AsyncConnection>::TransactionManager::rollback_transaction(
                            &mut ***c,
                        )
                        .await
                    }
                    ConnInner::Sqlite(c) => {
                        <SqliteConn as AsyncConnection>::TransactionManager::rollback_transaction(
                            &mut **c,
                        )
                        .await
                    }
                }
            })
            .await;
        if let Err(error) = result {
            tracing::warn!(error = %error, "rollback failed");
        }
    }
}

fn build_pool(url: &str, max_size: u32, timeout: Duration) -> PoolInner {
    if is_postgres_url(url) {
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::new_with_config(url, config);
        PoolInner::Pg(
            bb8::Pool::builder()
                .max_size(max_size)
                .connection_timeout(timeout)
                // A refused connection is an answer: fail at once (and open the breaker) rather
                // than retry until the timeout.
                .retry_connection(false)
                .test_on_check_out(false)
                .build_unchecked(manager),
        )
    } else {
        let mut config = ManagerConfig::<SqliteConn>::default();
        config.recycling_method = RecyclingMethod::Fast;
        let busy_ms = timeout.as_millis() as u64;
        config.custom_setup =
            Box::new(move |url| Box::pin(establish_sqlite(url.to_owned(), busy_ms)));
        let manager = AsyncDieselConnectionManager::new_with_config(url, config);
        PoolInner::Sqlite(
            bb8::Pool::builder()
                .max_size(max_size)
                .connection_timeout(timeout)
                // A refused connection is an answer: fail at once (and open the breaker) rather
                // than retry until the timeout.
                .retry_connection(false)
                .test_on_check_out(false)
                .build_unchecked(manager),
        )
    }
}

impl PoolInner {
    async fn get(&self) -> Result<ConnInner, StoreError> {
        Ok(match self {
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
        })
    }
}

/// One connection made directly (not through a pool, whose background attempts would outlive a
/// probe given up on a server that never answers) and asked `SELECT 1`, or for SQLite the
/// writer's lock without waiting (a file another process holds locked answers reads and refuses
/// every write).
async fn probe_once(shared: &Shared) -> Result<(), StoreError> {
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
    match shared.backend {
        Backend::Postgres => {
            let attempt = async {
                let mut conn = AsyncPgConnection::establish(&shared.url).await?;
                diesel::sql_query("SELECT 1").execute(&mut conn).await?;
                Ok::<(), StoreError>(())
            };
            tokio::time::timeout(shared.timeout, attempt)
                .await
                .map_err(|_| StoreError::Unavailable("the database did not answer".into()))?
        }
        Backend::Sqlite => {
            let busy_ms = shared.timeout.as_millis() as u64;
            let mut conn = establish_sqlite(shared.url.clone(), 0).await?;
            conn.batch_execute(&format!(
                "BEGIN IMMEDIATE; ROLLBACK; PRAGMA busy_timeout = {busy_ms};"
            ))
            .await?;
            Ok(())
        }
    }
}

/// While the breaker is open: every quarter second a probe (see `probe_once`); when one answers, a
/// fresh pool replaces the old one (whose connections may be dead or stalled) and the breaker
/// closes.
fn spawn_probe(shared: Arc<Shared>) {
    tokio::spawn(async move {
        while shared.breaker.is_open() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            match probe_once(&shared).await {
                Ok(()) => {
                    let pool = build_pool(&shared.url, shared.max_size, shared.timeout);
                    match shared.pool.write() {
                        Ok(mut current) => *current = pool,
                        Err(poisoned) => *poisoned.into_inner() = pool,
                    }
                    shared.breaker.close();
                }
                Err(error) => tracing::debug!(error = %error, "the database is still away"),
            }
        }
    });
}

impl Db {
    /// Builds the pool without connecting; the first query connects. `timeout` bounds a
    /// check-out and each statement; past it the breaker opens.
    pub async fn connect(url: &str, max_size: u32, timeout: Duration) -> Result<Db, StoreError> {
        Ok(Db {
            shared: Arc::new(Shared {
                pool: std::sync::RwLock::new(build_pool(url, max_size, timeout)),
                url: url.to_owned(),
                max_size,
                timeout,
                backend: if is_postgres_url(url) {
                    Backend::Postgres
                } else {
                    Backend::Sqlite
                },
                breaker: breaker::DbBreaker::default(),
            }),
            stats: Arc::new(DbStats::default()),
        })
    }

    pub fn stats(&self) -> &DbStats {
        &self.stats
    }

    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    /// The PostgreSQL URL, for a connection of its own outside the pool (LISTEN).
    pub fn postgres_url(&self) -> Option<String> {
        (self.shared.backend == Backend::Postgres).then(|| self.shared.url.clone())
    }

    pub fn breaker(&self) -> &breaker::DbBreaker {
        &self.shared.breaker
    }

    /// The same pool, counting into separate statistics: for background tasks (outbox drain,
    /// sweep), so the request-path counters say what requests cost.
    pub fn background(&self) -> Db {
        Db {
            shared: self.shared.clone(),
            stats: Arc::new(DbStats::default()),
        }
    }

    /// A pooled connection; `StoreError::Unavailable` at once while the breaker is open, and as
    /// soon as it opens for a check-out already waiting.
    pub async fn conn(&self) -> Result<Conn, StoreError> {
        self.stats.checkouts.fetch_add(1, Ordering::Relaxed);
        let breaker = &self.shared.breaker;
        if breaker.is_open() {
            return Err(StoreError::Unavailable(
                "the database is unavailable".into(),
            ));
        }
        let pool = match self.shared.pool.read() {
            Ok(pool) => pool.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let got = tokio::select! {
            got = pool.get() => got,
            _ = breaker.wait_open() => {
                return Err(StoreError::Unavailable("the database is unavailable".into()))
            }
        };
        match got {
            Ok(inner) => Ok(Conn {
                inner,
                stats: self.stats.clone(),
                shared: self.shared.clone(),
            }),
            Err(error) => {
                if breaker.trip(&error.to_string()) {
                    spawn_probe(self.shared.clone());
                }
                Err(error)
            }
        }
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

/// Every SQLite connection: WAL (readers never block the writer), a busy timeout as long as the
/// statement deadline (writers queue rather than fail; past it the breaker takes over), foreign
/// keys on.
async fn establish_sqlite(url: String, busy_ms: u64) -> diesel::ConnectionResult<SqliteConn> {
    tokio::task::spawn_blocking(move || {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let mut conn = SqliteConnection::establish(&url)?;
        conn.batch_execute(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = {busy_ms}; \
             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
        ))
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
        Ok(SyncConnectionWrapper::new(conn))
    })
    .await
    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?
}

/// Milliseconds since the Unix epoch (job leases).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch: every timestamp column holds this.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
