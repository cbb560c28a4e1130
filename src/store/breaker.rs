//! The database's circuit breaker. Without it, every request that needs the database while it
//! restarts waits the pool's whole check-out timeout, and a burst of them piles up behind the pool.
//!
//! The first failed check-out, a statement past its deadline, or an error that says the database
//! itself is gone (a closed connection, a server shutting down, an SQLite file that cannot be
//! opened or read) opens it. While it is open, `Db::conn` and every statement in flight answer
//! `StoreError::Unavailable` at once, and a background probe builds a fresh pool every quarter
//! second until one connection answers `SELECT 1`; then that pool replaces the old one (whose
//! connections may be dead or stalled) and the breaker closes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::result::{DatabaseErrorKind, Error as DieselError};

#[derive(Default)]
pub struct DbBreaker {
    open: AtomicBool,
    /// Wakes everything waiting on the database when the breaker opens.
    opened: tokio::sync::Notify,
    trips: AtomicU64,
    open_since: Mutex<Option<Instant>>,
    open_ms_total: AtomicU64,
}

impl DbBreaker {
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    /// Resolves when the breaker is open (at once if it is now).
    pub async fn wait_open(&self) {
        let notified = self.opened.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_open() {
            return;
        }
        notified.await;
    }

    /// Opens it; true when this call did (the caller then starts the probe).
    pub fn trip(&self, why: &str) -> bool {
        if self.open.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.trips.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut since) = self.open_since.lock() {
            *since = Some(Instant::now());
        }
        self.opened.notify_waiters();
        tracing::warn!(
            reason = %why,
            "the database is not answering: answering 503 at once until it is back"
        );
        true
    }

    pub fn close(&self) {
        if !self.open.swap(false, Ordering::AcqRel) {
            return;
        }
        if let Ok(mut since) = self.open_since.lock() {
            if let Some(start) = since.take() {
                self.open_ms_total
                    .fetch_add(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            }
        }
        tracing::info!("the database answers again");
    }

    pub fn trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }

    /// Seconds spent open since start, the current opening included.
    pub fn open_seconds(&self) -> f64 {
        let current = self
            .open_since
            .lock()
            .ok()
            .and_then(|since| since.map(|s| s.elapsed().as_millis() as u64))
            .unwrap_or(0);
        (self.open_ms_total.load(Ordering::Relaxed) + current) as f64 / 1000.0
    }
}

/// The error a statement gets when the breaker is open or its deadline passed.
pub fn unavailable(why: &str) -> DieselError {
    DieselError::DatabaseError(
        DatabaseErrorKind::ClosedConnection,
        Box::new(why.to_owned()),
    )
}

/// Whether a statement's error means the database itself is away, not that the statement was bad.
pub fn is_outage(error: &DieselError) -> bool {
    match error {
        // diesel-async reports a connection that failed under it (reset, closed, an I/O error:
        // no SQLSTATE) as UnableToSendCommand.
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(_, info) => {
            let message = info.message().to_ascii_lowercase();
            [
                // PostgreSQL going down or not up yet.
                "terminating connection",
                "the database system is shutting down",
                "the database system is starting up",
                "connection closed",
                // SQLite: the file is gone, unreadable or not a database.
                "unable to open database file",
                "file is not a database",
                "disk i/o error",
                // SQLite: another process holds the file locked past the busy timeout.
                "database is locked",
            ]
            .iter()
            .any(|m| message.contains(m))
        }
        _ => false,
    }
}

/// Runs a statement under the breaker: it opens the breaker when the statement fails with an
/// outage. A `cancellable` statement (PostgreSQL) also ends at once when the breaker opens, and
/// opens it when it passes `deadline`. SQLite's are not cancelled: diesel-async waits for a
/// dropped SQLite call with `block_in_place`, which panics on the HTTP workers' single-threaded
/// runtimes; SQLite's busy timeout (set to the same deadline) bounds them instead. The bool says
/// the breaker was opened here.
pub async fn guard<T>(
    breaker: &DbBreaker,
    deadline: Duration,
    cancellable: bool,
    statement: impl Future<Output = Result<T, DieselError>>,
) -> (Result<T, DieselError>, bool) {
    if breaker.is_open() {
        return (Err(unavailable("the database is unavailable")), false);
    }
    if !cancellable {
        let result = statement.await;
        let opened = match &result {
            Err(error) if is_outage(error) => breaker.trip(&error.to_string()),
            _ => false,
        };
        return (result, opened);
    }
    tokio::select! {
        result = statement => {
            let opened = match &result {
                Err(error) if is_outage(error) => breaker.trip(&error.to_string()),
                _ => false,
            };
            (result, opened)
        }
        _ = breaker.wait_open() => (Err(unavailable("the database is unavailable")), false),
        _ = tokio::time::sleep(deadline) => {
            let opened = breaker.trip("a statement passed its deadline");
            (Err(unavailable("the database did not answer in time")), opened)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_told_from_bad_statements() {
        assert!(is_outage(&unavailable("x")));
        let sqlite = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("file is not a database".to_owned()),
        );
        assert!(is_outage(&sqlite));
        let reset = DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand,
            Box::new("error communicating with the server: Connection reset by peer".to_owned()),
        );
        assert!(
            is_outage(&reset),
            "a connection that died under a statement"
        );
        let unique = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate key".to_owned()),
        );
        assert!(!is_outage(&unique));
        assert!(!is_outage(&DieselError::NotFound));
    }

    #[tokio::test]
    async fn a_trip_ends_what_waits_and_counts_its_time() {
        let breaker = std::sync::Arc::new(DbBreaker::default());
        let waiting = {
            let breaker = breaker.clone();
            tokio::spawn(async move {
                guard(
                    &breaker,
                    Duration::from_secs(30),
                    true,
                    std::future::pending::<Result<(), DieselError>>(),
                )
                .await
            })
        };
        tokio::task::yield_now().await;
        assert!(breaker.trip("test"));
        assert!(!breaker.trip("again"), "one trip per opening");
        let (result, opened) = tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .expect("ended at once")
            .unwrap();
        assert!(result.is_err() && !opened);
        assert_eq!(breaker.trips(), 1);
        breaker.close();
        assert!(!breaker.is_open());
        let (result, opened) = guard(
            &breaker,
            Duration::from_millis(10),
            true,
            std::future::pending::<Result<(), DieselError>>(),
        )
        .await;
        assert!(result.is_err() && opened, "a deadline trips it");
        assert_eq!(breaker.trips(), 2);
    }
}
