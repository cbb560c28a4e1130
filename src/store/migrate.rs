//! Embedded migrations for both backends, run at start and by `fedialt migrate`. On PostgreSQL
//! they run under an advisory lock, since several instances may start at once.

use diesel::migration::MigrationSource;
use diesel::{Connection, RunQueryDsl};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::{is_postgres_url, StoreError};

pub const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

const LOCK_ID: i64 = 0x0066_6564_6961_6c74; // "fedialt"

type PgSync = AsyncConnectionWrapper<AsyncPgConnection>;

/// Applies every pending migration; returns how many ran.
pub async fn run_pending(url: &str) -> Result<usize, StoreError> {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || run_pending_blocking(&url))
        .await
        .map_err(|e| StoreError::Migration(e.to_string()))?
}

fn run_pending_blocking(url: &str) -> Result<usize, StoreError> {
    if is_postgres_url(url) {
        let mut conn = <PgSync as Connection>::establish(url)?;
        diesel::sql_query(format!("SELECT pg_advisory_lock({LOCK_ID})")).execute(&mut conn)?;
        let result = apply(&mut conn, POSTGRES);
        let unlock =
            diesel::sql_query(format!("SELECT pg_advisory_unlock({LOCK_ID})")).execute(&mut conn);
        let applied = result?;
        unlock?;
        Ok(applied)
    } else {
        let mut conn = <diesel::SqliteConnection as Connection>::establish(url)?;
        diesel::sql_query("PRAGMA journal_mode = WAL").execute(&mut conn)?;
        apply(&mut conn, SQLITE)
    }
}

fn apply<C, S>(conn: &mut C, source: S) -> Result<usize, StoreError>
where
    C: MigrationHarness<C::Backend> + Connection,
    S: MigrationSource<C::Backend>,
{
    conn.run_pending_migrations(source)
        .map(|applied| applied.len())
        .map_err(|e| StoreError::Migration(e.to_string()))
}

/// Reverts every migration, newest first (tests check each down.sql really reverts its up.sql).
pub fn revert_all_blocking(url: &str) -> Result<usize, StoreError> {
    fn revert<C: MigrationHarness<C::Backend> + Connection, S: MigrationSource<C::Backend>>(
        conn: &mut C,
        source: S,
    ) -> Result<usize, StoreError> {
        conn.revert_all_migrations(source)
            .map(|v| v.len())
            .map_err(|e| StoreError::Migration(e.to_string()))
    }
    if is_postgres_url(url) {
        let mut conn = <PgSync as Connection>::establish(url)?;
        revert(&mut conn, POSTGRES)
    } else {
        let mut conn = <diesel::SqliteConnection as Connection>::establish(url)?;
        revert(&mut conn, SQLITE)
    }
}

/// Applies the next pending migration only; false when none is left.
pub fn step_up_blocking(url: &str) -> Result<bool, StoreError> {
    // EmbeddedMigrations is a const, not Clone: the caller hands in two copies.
    fn step<C: MigrationHarness<C::Backend> + Connection, S: MigrationSource<C::Backend>>(
        conn: &mut C,
        probe: S,
        source: S,
    ) -> Result<bool, StoreError> {
        let pending = conn
            .has_pending_migration(probe)
            .map_err(|e| StoreError::Migration(e.to_string()))?;
        if pending {
            conn.run_next_migration(source)
                .map_err(|e| StoreError::Migration(e.to_string()))?;
        }
        Ok(pending)
    }
    if is_postgres_url(url) {
        let mut conn = <PgSync as Connection>::establish(url)?;
        step(&mut conn, POSTGRES, POSTGRES)
    } else {
        let mut conn = <diesel::SqliteConnection as Connection>::establish(url)?;
        step(&mut conn, SQLITE, SQLITE)
    }
}

/// Reverts the newest applied migration.
pub fn step_down_blocking(url: &str) -> Result<(), StoreError> {
    fn step<C: MigrationHarness<C::Backend> + Connection, S: MigrationSource<C::Backend>>(
        conn: &mut C,
        source: S,
    ) -> Result<(), StoreError> {
        conn.revert_last_migration(source)
            .map(|_| ())
            .map_err(|e| StoreError::Migration(e.to_string()))
    }
    if is_postgres_url(url) {
        let mut conn = <PgSync as Connection>::establish(url)?;
        step(&mut conn, POSTGRES)
    } else {
        let mut conn = <diesel::SqliteConnection as Connection>::establish(url)?;
        step(&mut conn, SQLITE)
    }
}
