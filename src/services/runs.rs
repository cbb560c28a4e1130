//! Caption runs as people and workers see them: start, cancel, the live status, the list and one
//! run. The status of a connection's current or last run is a `Versioned` value (Redis in front,
//! the database behind); every change a worker or a person makes to a run goes through `write`,
//! so the progress bar never shows a state older than the database's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::versioned::{ConnFuture, Lookup, Put, Versioned, Written};
use crate::cache::keys::{self, Key};
use crate::cache::{Cache, Entry, Kind};
use crate::domain::{CaptionSettings, PlatformId, RunId, UserId};
use crate::store::drafts::{DraftRow, NewDraft};
use crate::store::runs::{NewRun, Progress, RunRow};
use crate::store::{self, Conn, Db, StoreError};

/// A run's cached version: its id, then its own change count, so a newer run of the connection
/// always outranks an older one (change counts stay far below a million: a run looks at most at
/// 5,000 posts).
fn cache_version(row: &RunRow) -> i64 {
    row.id * 1_000_000 + row.version
}

/// The status JSON of CONTRACT.md, for the connection's current or last run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunStatus {
    pub state: String,
    pub run_id: Option<RunId>,
    pub posts_scanned: i32,
    pub posts_limit: i32,
    pub images_found: i32,
    pub drafts_made: i32,
    pub media_skipped: i32,
    pub images_failed: i32,
    pub step: String,
    pub error: Option<String>,
}

impl RunStatus {
    pub fn none() -> RunStatus {
        RunStatus {
            state: "none".into(),
            run_id: None,
            posts_scanned: 0,
            posts_limit: 0,
            images_found: 0,
            drafts_made: 0,
            media_skipped: 0,
            images_failed: 0,
            step: String::new(),
            error: None,
        }
    }

    pub fn of(row: &RunRow) -> RunStatus {
        RunStatus {
            state: row.state.clone(),
            run_id: Some(RunId(row.id)),
            posts_scanned: row.posts_scanned,
            posts_limit: row.posts_limit,
            images_found: row.images_found,
            drafts_made: row.drafts_made,
            media_skipped: row.media_skipped,
            images_failed: row.images_failed,
            step: row.step.clone(),
            error: row.error.clone(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.state == store::runs::QUEUED || self.state == store::runs::RUNNING
    }
}

/// The cached value: the status, and whose it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CachedStatus {
    pub owner: Option<UserId>,
    pub status: RunStatus,
}

async fn read_status(
    conn: &mut Conn,
    platform_id: PlatformId,
) -> Result<(i64, CachedStatus), StoreError> {
    Ok(match store::runs::latest(conn, platform_id.get()).await? {
        Some(row) => (
            cache_version(&row),
            CachedStatus {
                owner: Some(UserId(row.user_id)),
                status: RunStatus::of(&row),
            },
        ),
        None => (
            0,
            CachedStatus {
                owner: None,
                status: RunStatus::none(),
            },
        ),
    })
}

pub enum Started {
    Queued(Box<RunRow>),
    /// The connection already has a queued or running run.
    AlreadyActive(RunId),
}

/// Stop signals of the runs this process's worker holds, so a cancel made here reaches its run at
/// once (a cancel made elsewhere reaches it at the worker's next check).
#[derive(Clone, Default)]
pub struct StopSignals {
    inner: Arc<Mutex<HashMap<i64, tokio::sync::watch::Sender<bool>>>>,
}

impl StopSignals {
    pub fn register(&self, run: i64) -> tokio::sync::watch::Receiver<bool> {
        let (tx, rx) = tokio::sync::watch::channel(false);
        if let Ok(mut map) = self.inner.lock() {
            map.insert(run, tx);
        }
        rx
    }

    pub fn stop(&self, run: i64) {
        if let Ok(map) = self.inner.lock() {
            if let Some(tx) = map.get(&run) {
                let _ = tx.send(true);
            }
        }
    }

    /// Every run this process holds (the worker is shutting down).
    pub fn stop_all(&self) {
        if let Ok(map) = self.inner.lock() {
            for tx in map.values() {
                let _ = tx.send(true);
            }
        }
    }

    /// Whether this process is carrying out the run.
    pub fn holds(&self, run: i64) -> bool {
        self.inner.lock().is_ok_and(|map| map.contains_key(&run))
    }

    pub fn forget(&self, run: i64) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(&run);
        }
    }
}

#[derive(Clone)]
pub struct RunService {
    progress: Versioned<CachedStatus>,
    db: Db,
    pub stops: StopSignals,
    /// Wakes this process's worker when a run is queued here.
    pub wake: Arc<tokio::sync::Notify>,
    /// The navigation's count of drafts waiting for review (a new draft changes it).
    pub waiting: super::waiting::Waiting,
}

impl RunService {
    pub fn new(db: Db, cache: Cache) -> RunService {
        RunService {
            progress: Versioned::new(db.clone(), cache.clone(), Kind::Progress),
            waiting: super::waiting::Waiting::new(db.clone(), cache),
            db,
            stops: StopSignals::default(),
            wake: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The same service (stop signals, wake-up) over another handle of the pool: the worker's,
    /// which counts its statements apart from the requests'.
    pub fn on(&self, db: Db) -> RunService {
        RunService {
            progress: Versioned::new(db.clone(), self.progress.cache().clone(), Kind::Progress),
            waiting: super::waiting::Waiting::new(db.clone(), self.progress.cache().clone()),
            db,
            stops: self.stops.clone(),
            wake: self.wake.clone(),
        }
    }

    /// A cached status entry read in a batch (the caption page's one round trip).
    pub fn decode(&self, entry: Option<Entry>, user_id: UserId) -> Option<RunStatus> {
        match self.progress.decode(entry) {
            Lookup::Value(cached) => Some(Self::for_owner(cached, user_id)),
            _ => None,
        }
    }

    fn for_owner(cached: CachedStatus, user_id: UserId) -> RunStatus {
        match cached.owner {
            Some(owner) if owner != user_id => RunStatus::none(),
            _ => cached.status,
        }
    }

    /// The connection's current or last run, as the status JSON tells it.
    pub async fn status(
        &self,
        user_id: UserId,
        platform_id: PlatformId,
    ) -> Result<RunStatus, StoreError> {
        let cached = self
            .progress
            .read(&Key::progress(platform_id), keys::ROW_TTL, move |conn| {
                Box::pin(read_status(conn, platform_id))
            })
            .await?;
        Ok(Self::for_owner(cached, user_id))
    }

    /// The database read behind a missed batch entry; puts the status back.
    pub async fn load_status(
        &self,
        user_id: UserId,
        platform_id: PlatformId,
    ) -> Result<RunStatus, StoreError> {
        let cached = self
            .progress
            .load(&Key::progress(platform_id), keys::ROW_TTL, move |conn| {
                Box::pin(read_status(conn, platform_id))
            })
            .await?;
        Ok(Self::for_owner(cached, user_id))
    }

    /// Runs `change` on a run row in a write transaction and caches the run's new status.
    pub async fn write<F>(&self, change: F) -> Result<Option<RunRow>, StoreError>
    where
        F: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, Option<RunRow>> + Send + 'static,
    {
        self.progress
            .write(move |conn| {
                Box::pin(async move {
                    Ok(match change(conn).await? {
                        Some(row) => Written {
                            put: Some(Put {
                                key: Key::progress(PlatformId(row.platform_id)),
                                version: cache_version(&row),
                                value: CachedStatus {
                                    owner: Some(UserId(row.user_id)),
                                    status: RunStatus::of(&row),
                                },
                                ttl: keys::ROW_TTL,
                            }),
                            result: Some(row),
                            gone: Vec::new(),
                        },
                        None => Written::nothing(None),
                    })
                })
            })
            .await
    }

    /// Queues a run of the connection with these settings (already clamped to its limit).
    pub async fn start(
        &self,
        user_id: UserId,
        platform_id: PlatformId,
        settings: &CaptionSettings,
    ) -> Result<Started, StoreError> {
        let snapshot = serde_json::to_string(settings)
            .map_err(|e| StoreError::Corrupt(format!("the settings do not serialize: {e}")))?;
        let limit = settings.max_posts_per_run as i32;
        let inserted = self
            .write(move |conn| {
                Box::pin(async move {
                    let now = store::now();
                    let row = store::runs::insert(
                        conn,
                        &NewRun {
                            user_id: user_id.get(),
                            platform_id: platform_id.get(),
                            state: store::runs::QUEUED,
                            settings: &snapshot,
                            posts_limit: limit,
                            step: "Waiting for a worker",
                            run_after: now,
                            created_at: now,
                            updated_at: now,
                        },
                    )
                    .await?;
                    Ok(Some(row))
                })
            })
            .await;
        match inserted {
            Ok(Some(row)) => {
                self.wake.notify_one();
                crate::jobs::signal_new_job(&self.db).await;
                Ok(Started::Queued(Box::new(row)))
            }
            Ok(None) => Err(StoreError::Corrupt("the new run was not returned".into())),
            Err(e) if e.is_unique_violation() => {
                let mut conn = self.db.conn().await?;
                let active = store::runs::latest(&mut conn, platform_id.get()).await?;
                Ok(Started::AlreadyActive(RunId(active.map_or(0, |r| r.id))))
            }
            Err(e) => Err(e),
        }
    }

    /// Cancels the connection's active run; None when it had none.
    pub async fn cancel(
        &self,
        user_id: UserId,
        platform_id: PlatformId,
    ) -> Result<Option<RunRow>, StoreError> {
        let row = self
            .write(move |conn| {
                Box::pin(store::runs::cancel_active(
                    conn,
                    platform_id.get(),
                    user_id.get(),
                ))
            })
            .await?;
        if let Some(row) = &row {
            self.stops.stop(row.id);
        }
        Ok(row)
    }

    /// Puts a failed run back in the queue (an admin's retry): Ok(None) when it is not failed,
    /// Err with a unique violation when its connection has another run going.
    pub async fn retry(&self, run: RunId) -> Result<Option<RunRow>, StoreError> {
        let row = self
            .write(move |conn| Box::pin(store::runs::retry_failed(conn, run.get())))
            .await?;
        if row.is_some() {
            self.wake.notify_one();
            crate::jobs::signal_new_job(&self.db).await;
        }
        Ok(row)
    }

    /// Adds to a held run's counters. None: the run is no longer this worker's.
    pub async fn advance(
        &self,
        run: RunId,
        owner: &str,
        progress: Progress,
    ) -> Result<Option<RunRow>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            Box::pin(async move { store::runs::advance(conn, run.get(), &owner, &progress).await })
        })
        .await
    }

    /// Stores a draft and counts it, in one transaction, only while the run is still held.
    pub async fn record_draft(
        &self,
        run: RunId,
        owner: &str,
        draft: NewDraft,
    ) -> Result<Option<RunRow>, StoreError> {
        let owner = owner.to_owned();
        let user = UserId(draft.user_id);
        let written = self
            .write(move |conn| {
                Box::pin(async move {
                    // The run first: on PostgreSQL this locks its row, so a worker that lost the
                    // lease meanwhile writes nothing.
                    let held = Progress::default();
                    if store::runs::advance(conn, run.get(), &owner, &held)
                        .await?
                        .is_none()
                    {
                        return Ok(None);
                    }
                    // A draft kept (a person edited or approved it meanwhile) is not counted.
                    let stored = store::drafts::put(conn, &draft).await?;
                    let failed = draft.state == store::drafts::GENERATION_FAILED;
                    let progress = Progress {
                        images_found: i32::from(stored),
                        drafts_made: i32::from(stored && !failed),
                        images_failed: i32::from(stored && failed),
                        ..Progress::default()
                    };
                    store::runs::advance(conn, run.get(), &owner, &progress).await
                })
            })
            .await;
        if matches!(written, Ok(Some(_))) {
            self.waiting.changed(user).await;
        }
        written
    }

    pub async fn finish(
        &self,
        run: RunId,
        owner: &str,
        state: &'static str,
        step: String,
        error: Option<String>,
    ) -> Result<Option<RunRow>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                store::runs::finish(conn, run.get(), &owner, state, &step, error.as_deref()).await
            })
        })
        .await
    }

    pub async fn requeue(
        &self,
        run: RunId,
        owner: &str,
        run_after: i64,
        step: String,
    ) -> Result<Option<RunRow>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                store::runs::requeue(conn, run.get(), &owner, run_after, &step).await
            })
        })
        .await
    }

    /// A stopping worker gives a held run back to the queue, due now; the try it was on is not
    /// counted against the run.
    pub async fn hand_back(
        &self,
        run: RunId,
        owner: &str,
        step: String,
    ) -> Result<Option<RunRow>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            Box::pin(async move { store::runs::hand_back(conn, run.get(), &owner, &step).await })
        })
        .await
    }

    pub async fn claim(
        &self,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<RunRow>, StoreError> {
        let owner = owner.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let now = store::now_ms();
                store::runs::claim(conn, &owner, now, now + lease.as_millis() as i64).await
            })
        })
        .await
    }

    /// A person's runs, newest first.
    pub async fn list(&self, user_id: UserId) -> Result<Vec<RunRow>, StoreError> {
        let mut conn = self.db.conn().await?;
        store::runs::for_user(&mut conn, user_id.get(), 200, 0).await
    }

    /// One of the person's runs and its drafts; None when it is not theirs.
    pub async fn detail(
        &self,
        user_id: UserId,
        run: RunId,
    ) -> Result<Option<(RunRow, Vec<DraftRow>)>, StoreError> {
        let mut conn = self.db.conn().await?;
        let Some(row) = store::runs::owned(&mut conn, run.get(), user_id.get()).await? else {
            return Ok(None);
        };
        let drafts = store::drafts::for_run(&mut conn, row.id).await?;
        Ok(Some((row, drafts)))
    }
}
