//! The worker: claims caption runs from the database and carries them out. Any number of workers,
//! in any number of processes on any number of machines, share one database: a run is claimed by
//! one of them (store::runs::claim), held with a lease the worker renews, and taken over by another
//! worker when the lease runs out (the run goes on from its last finished post).
//!
//! - A worker carries several runs at once; their model calls share CAPTION_CONCURRENCY slots,
//!   handed out first come, first served, so a long run does not hold back a short one.
//! - A new run wakes an idle worker at once: in this process through a `Notify`, in others through
//!   PostgreSQL's LISTEN/NOTIFY; a poll (FEDIALT_JOB_POLL_SECS) is the fallback (SQLite across
//!   processes, a lost notification).
//! - Cancelling or losing a run stops it within `CHECK_EVERY`: what it is waiting for (an
//!   instance, the model, a pause) is dropped. A database statement is never dropped halfway.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::captioning::Captioner;
use crate::crypto::SecretBox;
use crate::platforms::InstanceClient;
use crate::services::model::ModelService;
use crate::services::platforms::PlatformManager;
use crate::services::runs::RunService;
use crate::services::settings::SettingsManager;
use crate::services::watch::WatchService;
use crate::store::{self, Db};

mod caption;
mod publish;
mod watching;

/// Posts a worker publishes at once (each a few instance calls).
const MAX_PUBLISHING: usize = 4;

/// How often a running run checks that it is still its worker's (a cancel from another process
/// reaches it within this).
const CHECK_EVERY: Duration = Duration::from_millis(400);
/// Tries of a run that fails for a passing reason (the instance away) before it is failed.
const MAX_ATTEMPTS: i32 = 5;
/// The PostgreSQL channel a new run is announced on.
const CHANNEL: &str = "fedialt_jobs";

/// A run or a watcher was told to stop: cancelled, taken over, turned off, or the worker is
/// stopping.
#[derive(Debug)]
pub(super) struct Stopped;

/// The switch a run or a watcher is stopped with.
#[derive(Clone)]
pub(super) struct Stop(pub(super) watch::Receiver<bool>);

impl Stop {
    pub(super) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// `work`, unless the stop comes first (then `work` is dropped: an HTTP call, a pause; never
    /// a database statement).
    pub(super) async fn or_stop<F: std::future::Future>(
        &self,
        work: F,
    ) -> Result<F::Output, Stopped> {
        let mut rx = self.0.clone();
        tokio::select! {
            biased;
            _ = rx.wait_for(|stop| *stop) => Err(Stopped),
            out = work => Ok(out),
        }
    }

    pub(super) async fn sleep(&self, wait: Duration) -> Result<(), Stopped> {
        self.or_stop(tokio::time::sleep(wait)).await
    }
}

/// A model-call slot (see `Worker::slot`).
pub(super) struct Slot<'a> {
    permit: Option<tokio::sync::SemaphorePermit<'a>>,
    owed: &'a std::sync::atomic::AtomicUsize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        if let Some(permit) = self.permit.take() {
            if self
                .owed
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                permit.forget();
            }
        }
    }
}

/// The services a worker writes through (each keeps its cached copy in step).
pub struct Services {
    pub runs: RunService,
    pub platforms: PlatformManager,
    pub settings: SettingsManager,
    pub watches: WatchService,
}

/// The vision model: the one built from the environment at start, and the admins' choice that
/// replaces it once saved.
pub struct Model {
    pub initial: Captioner,
    pub chosen: ModelService,
}

#[derive(Clone)]
pub struct WorkerConfig {
    pub lease: Duration,
    /// How often an idle worker looks for work without being woken.
    pub poll: Duration,
    /// How often a watched account without a working stream is checked for new posts.
    pub watch_poll: Duration,
    pub max_image_bytes: u64,
    pub max_image_pixels: u64,
}

struct Inner {
    id: String,
    db: Db,
    runs: RunService,
    platforms: PlatformManager,
    settings: SettingsManager,
    watches: WatchService,
    /// Wakes the watch keeper (a person turned watching on).
    watch_wake: tokio::sync::Notify,
    /// Watchers catching up at once (after a start or a gap, many may want to): the instances
    /// and the worker's memory see a few at a time.
    catching_up: Semaphore,
    instances: InstanceClient,
    secrets: SecretBox,
    /// The model in use and the version of the admins' choice it was built from (0: the
    /// environment's); rebuilt when that changes.
    current: std::sync::Mutex<(i64, Arc<Captioner>)>,
    model: ModelService,
    /// The model calls this worker makes at once.
    slots: Semaphore,
    /// Slots a lowered concurrency still has to take away: the next ones released are forgotten.
    owed: std::sync::atomic::AtomicUsize,
    /// Images this worker holds in memory at once (downloading, waiting for a slot, described).
    images: Semaphore,
    max_runs: usize,
    config: WorkerConfig,
    /// What is left of each connection's rate limit.
    budgets: publish::Budgets,
}

#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

impl Worker {
    pub fn new(
        db: Db,
        services: Services,
        instances: InstanceClient,
        secrets: SecretBox,
        model: Model,
        config: WorkerConfig,
    ) -> Worker {
        let Model {
            initial: captioner,
            chosen: model,
        } = model;
        let Services {
            runs,
            platforms,
            settings,
            watches,
        } = services;
        let concurrency = captioner.concurrency();
        let id = format!(
            "{}-{}-{:08x}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()),
            std::process::id(),
            rand::random::<u32>()
        );
        Worker {
            inner: Arc::new(Inner {
                id,
                db,
                runs,
                platforms,
                settings,
                watches,
                watch_wake: tokio::sync::Notify::new(),
                catching_up: Semaphore::new(16),
                instances,
                secrets,
                slots: Semaphore::new(concurrency),
                owed: std::sync::atomic::AtomicUsize::new(0),
                images: Semaphore::new(concurrency * 2),
                // A run keeps as many images in flight as there are slots, so a few runs keep
                // every slot busy; a few more let a short run start at once beside long ones.
                // Few enough that workers share a queue evenly (each takes what it can serve).
                max_runs: (concurrency * 2).max(4),
                current: std::sync::Mutex::new((0, Arc::new(captioner))),
                model,
                config,
                budgets: publish::Budgets::default(),
            }),
        }
    }

    /// Runs until `shutdown`; then stops its runs (they go back to the queue, where another worker
    /// takes them up) and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let wake = self.inner.runs.wake.clone();
        listen_for_jobs(
            &self.inner.db,
            wake.clone(),
            self.inner.config.poll,
            shutdown.clone(),
        );
        let mut tasks = JoinSet::new();
        let mut publishing = JoinSet::new();
        let mut posts = JoinSet::new();
        let watching = tokio::spawn(self.clone().watch_accounts(shutdown.clone()));
        tracing::info!(worker = %self.inner.id, "worker started");
        loop {
            while publishing.len() < MAX_PUBLISHING {
                match self.claim_publish().await {
                    Ok(Some(job)) => {
                        publishing.spawn(self.clone().publish(job));
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(error = %error, "could not look for posts to publish");
                        break;
                    }
                }
            }
            while posts.len() < self.inner.max_runs {
                match self.claim_post().await {
                    Ok(Some(job)) => {
                        posts.spawn(self.clone().draft_post(job));
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(error = %error, "could not look for new posts to draft");
                        break;
                    }
                }
            }
            while tasks.len() < self.inner.max_runs {
                match self
                    .inner
                    .runs
                    .claim(&self.inner.id, self.inner.config.lease)
                    .await
                {
                    Ok(Some(row)) => {
                        let worker = self.clone();
                        tasks.spawn(async move { worker.execute(row).await });
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(error = %error, "could not look for work");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = wake.notified() => {
                    // Maybe a person turned watching on: the watch keeper looks now.
                    self.inner.watch_wake.notify_one();
                }
                _ = tokio::time::sleep(self.inner.config.poll) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                Some(_) = publishing.join_next(), if !publishing.is_empty() => {}
                Some(_) = posts.join_next(), if !posts.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        self.inner.runs.stops.stop_all();
        // The watchers stop at once and give their accounts back (before the waits below, which
        // may outlast the process's grace period).
        let _ = watching.await;
        while tasks.join_next().await.is_some() {}
        // Publishing is a few calls with timeouts: let them end (a job cut short is safe, but
        // finishing it spares the instance a re-check).
        while publishing.join_next().await.is_some() {}
        // A post's drafts are committed at its end: let those near it finish (the others' leases
        // run out and another worker drafts them).
        while posts.join_next().await.is_some() {}
        tracing::info!(worker = %self.inner.id, "worker stopped");
    }

    async fn claim_publish(&self) -> Result<Option<store::publish::PublishJob>, store::StoreError> {
        let now = store::now_ms();
        let mut conn = self.inner.db.conn().await?;
        crate::write_tx!(
            conn,
            store::publish::claim(
                &mut conn,
                &self.inner.id,
                now,
                now + self.inner.config.lease.as_millis() as i64
            )
            .await
        )
    }

    /// Publishes every post that is due, one after another, until none is left (tests).
    pub async fn drain_publishing(&self) -> usize {
        let mut done = 0;
        while let Ok(Some(job)) = self.claim_publish().await {
            self.clone().publish(job).await;
            done += 1;
        }
        done
    }

    /// The model to use now: the admins' choice (a cached read, from memory when warm), the
    /// captioner rebuilt when it changed; the slots follow its concurrency (a decrease takes
    /// effect as calls in flight end).
    pub(crate) async fn captioner(&self) -> Arc<Captioner> {
        let (version, current) = {
            let guard = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
            (guard.0, guard.1.clone())
        };
        let Ok(effective) = self.inner.model.effective().await else {
            return current;
        };
        if effective.version == version {
            return current;
        }
        let Ok(built) = Captioner::new(effective.config) else {
            return current;
        };
        let built = Arc::new(built);
        let mut guard = self.inner.current.lock().unwrap_or_else(|e| e.into_inner());
        if guard.0 != effective.version {
            use std::sync::atomic::Ordering::SeqCst;
            let (old, new) = (guard.1.concurrency(), built.concurrency());
            if new > old {
                // Pay off what a lowering still owed, then add the rest.
                let mut more = new - old;
                while more > 0
                    && self
                        .inner
                        .owed
                        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                {
                    more -= 1;
                }
                self.inner.slots.add_permits(more);
            } else if old > new {
                // Free slots go now; slots in use are taken away as their calls end.
                let forgotten = self.inner.slots.forget_permits(old - new);
                self.inner.owed.fetch_add(old - new - forgotten, SeqCst);
            }
            *guard = (effective.version, built);
        }
        guard.1.clone()
    }

    /// A model-call slot; released into the pool, or forgotten while a lowered concurrency is
    /// owed. None when the worker is stopping.
    pub(super) async fn slot(&self) -> Option<Slot<'_>> {
        let permit = self.inner.slots.acquire().await.ok()?;
        Some(Slot {
            permit: Some(permit),
            owed: &self.inner.owed,
        })
    }

    /// Marks a connection whose token the instance refused, so its pages say so.
    async fn mark_needs_reauth(&self, user_id: i64, platform_id: i64) {
        let written = self
            .inner
            .platforms
            .write(crate::domain::UserId(user_id), Vec::new(), move |conn| {
                Box::pin(async move {
                    store::platforms::set_needs_reauth(conn, platform_id, true).await
                })
            })
            .await;
        if let Err(error) = written {
            tracing::warn!(error = %error, "could not mark the connection as needing a new token");
        }
    }

    /// Carries out every run that is due, one after another, until none is left (tests).
    pub async fn drain(&self) -> usize {
        let mut done = 0;
        while let Ok(Some(row)) = self
            .inner
            .runs
            .claim(&self.inner.id, self.inner.config.lease)
            .await
        {
            self.clone().execute(row).await;
            done += 1;
        }
        done
    }
}

/// Announces a new run to workers in other processes (PostgreSQL); best effort, since they also
/// poll.
pub async fn signal_new_job(db: &Db) {
    if db.backend() != store::Backend::Postgres {
        return;
    }
    if let Ok(mut conn) = db.conn().await {
        use diesel_async::RunQueryDsl;
        let _ = crate::run!(&mut conn, |c| diesel::sql_query(format!(
            "NOTIFY {CHANNEL}"
        ))
        .execute(c)
        .await);
    }
}

/// On PostgreSQL: a connection of its own that LISTENs for new runs and wakes the worker. It
/// reconnects after a failure; the poll covers the gap.
fn listen_for_jobs(
    db: &Db,
    wake: Arc<tokio::sync::Notify>,
    retry: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(url) = db.postgres_url() else {
        return;
    };
    tokio::spawn(async move {
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
        use futures_util::StreamExt;
        loop {
            let listened = async {
                let mut conn = AsyncPgConnection::establish(&url).await.ok()?;
                diesel::sql_query(format!("LISTEN {CHANNEL}"))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                let mut notifications = std::pin::pin!(conn.notifications_stream());
                while let Some(Ok(_)) = notifications.next().await {
                    wake.notify_one();
                }
                Some(())
            };
            tokio::select! {
                _ = listened => {}
                _ = shutdown.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::Semaphore;

    use super::Slot;

    #[tokio::test]
    async fn a_lowered_concurrency_takes_slots_in_use_away_as_they_are_released() {
        let slots = Semaphore::new(3);
        let owed = AtomicUsize::new(0);
        let take = || async {
            Slot {
                permit: Some(slots.acquire().await.unwrap()),
                owed: &owed,
            }
        };
        let first = take().await;
        let second = take().await;
        // Down from 3 to 1 while two calls are going: the free slot goes now, one is owed.
        let forgotten = slots.forget_permits(2);
        owed.fetch_add(2 - forgotten, Ordering::SeqCst);
        assert_eq!(
            (slots.available_permits(), owed.load(Ordering::SeqCst)),
            (0, 1)
        );
        drop(first);
        assert_eq!(
            (slots.available_permits(), owed.load(Ordering::SeqCst)),
            (0, 0)
        );
        drop(second);
        assert_eq!(slots.available_permits(), 1, "one call at once from now on");
    }
}
