//! Watching accounts for new posts, and drafting them.
//!
//! - Each worker holds a set of watched accounts under a lease in the database (`watches`), claimed
//!   with `SKIP LOCKED` and renewed for all of them in one statement; an account is watched by one
//!   worker at a time, and a dead worker's accounts are taken over when its lease runs out. A
//!   worker that cannot renew for two thirds of the lease stops its watchers (another may have
//!   taken them over).
//! - Mastodon: the user stream (server-sent events) at the streaming host the instance names.
//!   `update` events for the person's own posts queue them; `status.update` queues a post again
//!   only when an image in it has neither a description nor a draft (so fedialt's own edits never
//!   loop); `delete` drops the post's undecided drafts and its queued job. Pixelfed, and any
//!   Mastodon whose stream fails: the account's posts since the last one seen, every
//!   FEDIALT_WATCH_POLL_SECS.
//! - Before reading a stream, and after any gap, the watcher catches up from the last post id it
//!   recorded. Queuing posts and moving that id are one transaction, and a post is one job
//!   (unique), so no post is missed and none is drafted twice.
//! - Each new post is a small job (`post_jobs`) that the worker's main loop claims like runs: its
//!   images go through the same download checks, image bound and model slots.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::caption::older;
use super::{Stop, Stopped, Worker, MAX_ATTEMPTS};
use crate::config::Secret;
use crate::domain::{InstanceUrl, PlatformId, PlatformType, UserId};
use crate::platforms::statuses::{Cursor, Status};
use crate::platforms::stream::SseParser;
use crate::platforms::PlatformError;
use crate::store::drafts::{self, NewDraft};
use crate::store::post_jobs::{self, PostJob};
use crate::store::watches::{self, WatchRow, POLL, STREAM};
use crate::store::{self, StoreError};

/// Accounts one worker watches at most; the rest wait for another worker.
const MAX_WATCHES: usize = 20_000;
/// Accounts taken up in one claim.
const CLAIM_BATCH: i64 = 500;
/// A stream that sends nothing (not even a heartbeat) for this long is opened again.
const SILENT_STREAM: Duration = Duration::from_secs(90);
/// A stream that lasted this long was healthy: the next reconnect starts its backoff afresh.
const HEALTHY_STREAM: Duration = Duration::from_secs(60);
/// The first reconnect's wait; doubled each failure in a row, up to the poll interval.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Pages of new posts one catch-up reads at most (40 each).
const MAX_CATCH_UP_PAGES: usize = 25;
/// Rate-limited answers in a row a catch-up waits out before it gives up for now.
const RATE_LIMIT_TRIES: u32 = 5;
/// Failures in a row before the caption page shows the problem.
const PROBLEM_AFTER: u32 = 3;
/// Bytes a stream may send in `BUDGET_WINDOW` (a busy home timeline sends far less).
const STREAM_BUDGET: usize = 4 << 20;
const BUDGET_WINDOW: Duration = Duration::from_secs(10);
/// Events a stream may send in `BUDGET_WINDOW` (a person's home timeline sends a few a second at
/// most; each event may cost a read).
const EVENT_BUDGET: usize = 500;
/// The longest wait an instance's rate limit is granted at once (then it is asked again).
const LONGEST_RATE_WAIT: Duration = Duration::from_secs(15 * 60);

/// How long to wait for a rate limit: what the instance said (a minute when it did not), at most
/// `LONGEST_RATE_WAIT`.
fn rate_wait(retry_after: Option<u64>) -> Duration {
    Duration::from_secs(retry_after.unwrap_or(60)).min(LONGEST_RATE_WAIT)
}

const TOKEN_REFUSED: &str = "the instance refused fedialt's token. Connect the account again on \
     Connected accounts; watching goes on by itself then, from the last post it saw.";

/// Why a watcher stops for good (for this worker).
#[derive(Debug)]
enum Halt {
    /// Told to stop: the lease is gone, watching was turned off, or the worker is stopping.
    Stopped,
    /// The instance refused the token.
    TokenRefused,
    /// The connection cannot be watched now (its token cannot be read, the database failed):
    /// why, and how long until a worker tries it again.
    Unusable(String, Duration),
}

/// How long a worker that cannot use a watch leaves it to other workers before it tries again.
const UNUSABLE_RETRY: Duration = Duration::from_secs(10 * 60);
/// The same when the database failed as the watcher started.
const DATABASE_RETRY: Duration = Duration::from_secs(30);

/// What interrupted a watcher's work; all but `Halt` are waited out.
enum Trouble {
    Halt(Halt),
    /// The instance asked to wait this long.
    Wait(Duration),
    /// The instance or the network failed in a passing way.
    Transient(String),
    Store(StoreError),
}

impl From<Halt> for Trouble {
    fn from(h: Halt) -> Trouble {
        Trouble::Halt(h)
    }
}

impl From<StoreError> for Trouble {
    fn from(e: StoreError) -> Trouble {
        Trouble::Store(e)
    }
}

impl From<Stopped> for Halt {
    fn from(_: Stopped) -> Halt {
        Halt::Stopped
    }
}

impl From<Stopped> for Trouble {
    fn from(_: Stopped) -> Trouble {
        Trouble::Halt(Halt::Stopped)
    }
}

/// A wait of `base · 2^failures`, at most `cap`, with jitter (half to all of it), so that
/// watchers cut off together do not all come back in the same instant.
fn backoff(failures: u32, cap: Duration) -> Duration {
    let full = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(failures.min(20)))
        .min(cap);
    full.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// One watched account, as its watcher sees it.
struct Watching {
    worker: Worker,
    platform_id: i64,
    user_id: i64,
    account_id: String,
    platform_type: PlatformType,
    instance: InstanceUrl,
    token: Secret<String>,
    /// When watching began (seconds): the first look takes posts made since.
    since: i64,
    /// The newest post handled: the watcher reads on after it.
    cursor: Option<String>,
    mode: Option<String>,
    problem: Option<String>,
    /// Passing failures in a row, and when the first of them came (seconds).
    failures: u32,
    failing_since: Option<i64>,
    stop: Stop,
}

impl Worker {
    /// Takes up watched accounts and keeps their leases until `shutdown`; then stops the
    /// watchers and gives the accounts back, so another worker takes them at once.
    pub(super) async fn watch_accounts(self, mut shutdown: watch::Receiver<bool>) {
        let inner = &self.inner;
        let renew_every = inner.config.lease / 3;
        let fence = inner.config.lease * 2 / 3;
        // Each held account: its watcher's generation and stop switch.
        let mut held: HashMap<i64, (u64, watch::Sender<bool>)> = HashMap::new();
        let mut tasks: JoinSet<(i64, u64, Option<Duration>)> = JoinSet::new();
        // Accounts this worker could not use (its key cannot open their token, say), and until
        // when it leaves them to other workers.
        let mut skip: HashMap<i64, Instant> = HashMap::new();
        let mut generation = 0u64;
        let mut renewed = Instant::now();
        let mut next_renewal = Instant::now() + renew_every;
        loop {
            if held.is_empty() {
                // Nothing to renew: the clock starts with the first account taken up.
                renewed = Instant::now();
                next_renewal = renewed + renew_every;
            } else if Instant::now() >= next_renewal {
                next_renewal = Instant::now() + renew_every;
                match self.renew_watches().await {
                    Ok(still) => {
                        renewed = Instant::now();
                        let still: HashSet<i64> = still.into_iter().collect();
                        held.retain(|id, (_, stop)| {
                            let keep = still.contains(id);
                            if !keep {
                                let _ = stop.send(true);
                            }
                            keep
                        });
                    }
                    Err(error) => {
                        tracing::debug!(error = %error, "could not renew the watches' leases");
                        if renewed.elapsed() >= fence {
                            // Another worker may take them over once the lease runs out: stop
                            // first, so that no account is watched twice.
                            tracing::warn!(
                                watches = held.len(),
                                "the watches' leases could not be renewed; their watchers stop"
                            );
                            for (_, (_, stop)) in held.drain() {
                                let _ = stop.send(true);
                            }
                        }
                    }
                }
            }
            if held.len() < MAX_WATCHES {
                let room = (MAX_WATCHES - held.len()).min(CLAIM_BATCH as usize) as i64;
                skip.retain(|_, until| *until > Instant::now());
                let skipped: Vec<i64> = skip.keys().copied().collect();
                match self.claim_watches(room, &skipped).await {
                    Ok(rows) => {
                        for row in rows {
                            generation += 1;
                            let (tx, rx) = watch::channel(false);
                            if let Some((_, old)) = held.insert(row.platform_id, (generation, tx)) {
                                let _ = old.send(true);
                            }
                            let worker = self.clone();
                            let gen = generation;
                            tasks.spawn(async move {
                                let id = row.platform_id;
                                let skip = worker.watch_account(row, Stop(rx)).await;
                                (id, gen, skip)
                            });
                        }
                    }
                    Err(error) => {
                        tracing::debug!(error = %error, "could not look for accounts to watch")
                    }
                }
            }
            let until_renewal = next_renewal.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = inner.watch_wake.notified() => {
                    // Something changed (watching turned on, an account connected again): what
                    // this worker could not use a moment ago may work now.
                    skip.clear();
                }
                _ = tokio::time::sleep(inner.config.poll.min(until_renewal.max(Duration::from_millis(50)))) => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((id, gen, leave)) = done {
                        if held.get(&id).is_some_and(|(g, _)| *g == gen) {
                            held.remove(&id);
                        }
                        if let Some(leave) = leave {
                            skip.insert(id, Instant::now() + leave);
                        }
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        for (_, (_, stop)) in held.drain() {
            let _ = stop.send(true);
        }
        while tasks.join_next().await.is_some() {}
        if let Ok(mut conn) = inner.db.conn().await {
            let _ = watches::release_all(&mut conn, &inner.id).await;
        }
    }

    async fn claim_watches(&self, limit: i64, skip: &[i64]) -> Result<Vec<WatchRow>, StoreError> {
        let now = store::now_ms();
        let until = now + self.inner.config.lease.as_millis() as i64;
        let mut conn = self.inner.db.conn().await?;
        crate::write_tx!(
            conn,
            watches::claim(&mut conn, &self.inner.id, now, until, limit, skip).await
        )
    }

    async fn renew_watches(&self) -> Result<Vec<i64>, StoreError> {
        let until = store::now_ms() + self.inner.config.lease.as_millis() as i64;
        let mut conn = self.inner.db.conn().await?;
        watches::renew(&mut conn, &self.inner.id, until).await
    }

    /// One account's watcher, until it is stopped or cannot go on; Some: how long this worker
    /// leaves the account to others (it could not use it).
    async fn watch_account(self, row: WatchRow, stop: Stop) -> Option<Duration> {
        let platform_id = row.platform_id;
        // The start and the end are boxed: the task keeps only the watching itself.
        let mut watching = match Box::pin(self.watching(row, stop)).await {
            Ok(w) => w,
            Err(Halt::Stopped) => return None,
            Err(halt) => return Box::pin(self.end_watch(platform_id, halt)).await,
        };
        let halt = match watching.platform_type {
            PlatformType::Mastodon => watching.stream().await,
            PlatformType::Pixelfed => watching.poll().await,
        };
        Box::pin(self.end_watch(platform_id, halt)).await
    }

    async fn watching(&self, row: WatchRow, stop: Stop) -> Result<Watching, Halt> {
        let platform = {
            let mut conn = loop {
                match self.inner.db.conn().await {
                    Ok(conn) => break conn,
                    Err(_) => stop.sleep(Duration::from_secs(2)).await?,
                }
            };
            store::platforms::owned(&mut conn, row.platform_id, row.user_id).await
        }
        .map_err(|_| Halt::Unusable("fedialt's database did not answer".into(), DATABASE_RETRY))?
        .ok_or_else(|| Halt::Unusable("the connection was removed".into(), UNUSABLE_RETRY))?;
        let (instance, token) = crate::platforms::connect::credentials(
            &self.inner.secrets,
            &platform,
        )
        .map_err(|why| match why {
            crate::platforms::connect::Unusable::Token => Halt::Unusable(
                "a worker could not read the connection's token: its FEDIALT_SECRET_KEY is not \
                 the one the account was connected with (if the key was changed on purpose, \
                 connect the account again)"
                    .into(),
                UNUSABLE_RETRY,
            ),
            other => Halt::Unusable(other.words().into(), UNUSABLE_RETRY),
        })?;
        let platform_type = match platform.platform_type.as_str() {
            "pixelfed" => PlatformType::Pixelfed,
            _ => PlatformType::Mastodon,
        };
        Ok(Watching {
            worker: self.clone(),
            platform_id: row.platform_id,
            user_id: row.user_id,
            account_id: platform.account_id,
            platform_type,
            instance,
            token,
            since: row.enabled_at.unwrap_or_else(store::now),
            cursor: row.last_status_id,
            mode: row.mode,
            problem: row.problem,
            failures: 0,
            failing_since: None,
            stop,
        })
    }

    /// Records why a watcher ended, and gives the account back unless it was taken away.
    /// Some: how long this worker leaves the account to other workers.
    async fn end_watch(&self, platform_id: i64, halt: Halt) -> Option<Duration> {
        let mut leave = None;
        let problem = match halt {
            Halt::Stopped => {
                tracing::info!(platform = platform_id, "stopped watching an account");
                return None;
            }
            Halt::TokenRefused => {
                tracing::warn!(platform = platform_id, "the instance refused the token: watching the account stopped until it is connected again");
                let user = {
                    let mut conn = match self.inner.db.conn().await {
                        Ok(conn) => conn,
                        Err(_) => return None,
                    };
                    watches::get(&mut conn, platform_id)
                        .await
                        .ok()
                        .flatten()
                        .map(|w| w.user_id)
                };
                if let Some(user_id) = user {
                    self.mark_needs_reauth(user_id, platform_id).await;
                }
                TOKEN_REFUSED.to_owned()
            }
            Halt::Unusable(why, retry) => {
                tracing::warn!(platform = platform_id, why = %why, "this worker cannot watch an account; it leaves it to others for now");
                // Left to other workers at once (one of them may be able to); this one tries
                // again after `retry`.
                leave = Some(retry);
                format!(
                    "{why}. That worker tries again at {}.",
                    crate::web::when(store::now() + retry.as_secs() as i64)
                )
            }
        };
        let owner = self.inner.id.clone();
        let written = self
            .inner
            .watches
            .write(move |conn| {
                Box::pin(async move {
                    let row =
                        watches::record(conn, platform_id, &owner, None, None, Some(&problem))
                            .await?;
                    watches::release(conn, platform_id, &owner).await?;
                    Ok(((), row))
                })
            })
            .await;
        if let Err(error) = written {
            tracing::warn!(error = %error, "could not record why watching an account stopped");
        }
        leave
    }

    /// Claims the next new post that is due (any connection, one post per connection at a time).
    pub(super) async fn claim_post(&self) -> Result<Option<PostJob>, StoreError> {
        let now = store::now_ms();
        let mut conn = self.inner.db.conn().await?;
        crate::write_tx!(
            conn,
            post_jobs::claim(
                &mut conn,
                &self.inner.id,
                now,
                now + self.inner.config.lease.as_millis() as i64
            )
            .await
        )
    }

    /// Drafts every new post that is due, one after another, until none is left (tests).
    pub async fn drain_posts(&self) -> usize {
        let mut done = 0;
        while let Ok(Some(job)) = self.claim_post().await {
            self.clone().draft_post(job).await;
            done += 1;
        }
        done
    }

    /// One new post: its undescribed images drafted (the connection's caption settings apply),
    /// committed with the job's end while the job is still this worker's; approved and sent to
    /// publishing at once when the person chose to publish without review.
    pub(super) async fn draft_post(self, job: PostJob) {
        if job.attempts > MAX_ATTEMPTS + 3 {
            // Taken up again and again without an end (each time the database failed as it
            // committed, or the worker died): given up, with why.
            if let Ok(mut conn) = self.inner.db.conn().await {
                let _ = post_jobs::finish(
                    &mut conn,
                    job.id,
                    &self.inner.id,
                    post_jobs::FAILED,
                    Some("tried too often without finishing"),
                )
                .await;
            }
            return;
        }
        let (done_tx, done_rx) = watch::channel(false);
        let keeper = tokio::spawn(self.clone().keep_post_lease(job.id, done_rx));
        let outcome = self.draft_post_inner(&job).await;
        let _ = done_tx.send(true);
        let _ = keeper.await;
        let owner = self.inner.id.clone();
        let recorded = match outcome {
            Ok(()) => Ok(true),
            Err(PostFailure::Lost | PostFailure::Ended) => Ok(true),
            Err(PostFailure::Fatal(why)) => {
                let mut conn = self.inner.db.conn().await;
                match &mut conn {
                    Ok(conn) => {
                        post_jobs::finish(conn, job.id, &owner, post_jobs::FAILED, Some(&why)).await
                    }
                    Err(_) => Ok(false),
                }
            }
            Err(PostFailure::Later(why)) => {
                let failed = job.attempts >= MAX_ATTEMPTS;
                let backoff = 5 * 2_i64.pow(job.attempts.clamp(0, 8) as u32);
                match self.inner.db.conn().await {
                    Ok(mut conn) if failed => {
                        post_jobs::finish(&mut conn, job.id, &owner, post_jobs::FAILED, Some(&why))
                            .await
                    }
                    Ok(mut conn) => {
                        post_jobs::retry_later(
                            &mut conn,
                            job.id,
                            &owner,
                            store::now() + backoff,
                            Some(&why),
                            true,
                        )
                        .await
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and the post is taken up again.
            tracing::warn!(job = job.id, error = %error, "how a new post's job ended could not be recorded");
        }
    }

    async fn keep_post_lease(self, id: i64, mut done: watch::Receiver<bool>) {
        let every = self.inner.config.lease / 3;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = done.changed() => return,
            }
            let until = store::now_ms() + self.inner.config.lease.as_millis() as i64;
            if let Ok(mut conn) = self.inner.db.conn().await {
                if let Ok(false) = post_jobs::renew(&mut conn, id, &self.inner.id, until).await {
                    return;
                }
            }
        }
    }

    async fn draft_post_inner(&self, job: &PostJob) -> Result<(), PostFailure> {
        let inner = &self.inner;
        let status: Status = serde_json::from_str(&job.status_json)
            .map_err(|_| PostFailure::Fatal("the post as stored could not be read".into()))?;
        let watch = inner
            .watches
            .get(PlatformId(job.platform_id))
            .await
            .map_err(PostFailure::store)?;
        if !watch.enabled {
            return self.end_post(job, Vec::new(), None).await;
        }
        let settings = match inner
            .settings
            .get_user_settings(UserId(job.user_id), PlatformId(job.platform_id))
            .await
        {
            Ok((_, settings)) => settings.settings,
            Err(crate::services::settings::SettingsError::NotFound) => {
                return Err(PostFailure::Fatal("the connection was removed".into()))
            }
            Err(crate::services::settings::SettingsError::Store(e)) => {
                return Err(PostFailure::store(e))
            }
        };
        // A new post's images are drafted once; earlier drafts (a run's, a person's) stay.
        let settings = crate::domain::CaptionSettings {
            reprocess_existing: false,
            ..settings
        };
        let media_ids: Vec<String> = status.media.iter().map(|m| m.id.clone()).collect();
        let existing = {
            let mut conn = inner.db.conn().await.map_err(PostFailure::store)?;
            drafts::for_media(&mut conn, job.platform_id, &media_ids)
                .await
                .map_err(PostFailure::store)?
        }
        .into_iter()
        .map(|d| (d.media_id.clone(), d))
        .collect();
        let wanted = match super::caption::plan_post(&status, &existing, &settings, -1) {
            super::caption::Plan::Work { wanted, .. } => wanted,
            _ => Vec::new(),
        };
        let mut answers = JoinSet::new();
        for media in wanted {
            let worker = self.clone();
            let settings = settings.clone();
            let text = status.text.clone();
            let language = status.language.clone();
            answers.spawn(async move {
                let result = worker
                    .describe_image(&media.url, &settings, &text, language.as_deref())
                    .await;
                (media, result)
            });
        }
        let model = self.model().await;
        let mut made = Vec::new();
        while let Some(answer) = answers.join_next().await {
            let Ok((media, result)) = answer else {
                return Err(PostFailure::Later(
                    "an image's task ended unexpectedly".into(),
                ));
            };
            let (state, alt_text, error) = match result {
                Ok(text) => (drafts::PENDING, text, None),
                Err(super::caption::NotDescribed::Image(reason)) => {
                    (drafts::GENERATION_FAILED, String::new(), Some(reason))
                }
                Err(super::caption::NotDescribed::ModelAway(reason)) => {
                    return Err(PostFailure::Later(reason))
                }
            };
            let now = store::now();
            made.push(NewDraft {
                run_id: None,
                user_id: job.user_id,
                platform_id: job.platform_id,
                status_id: status.id.clone(),
                status_url: status.url.clone(),
                media_id: media.id.clone(),
                preview_url: media.preview_url.clone(),
                image_url: media.url.clone(),
                post_text: status.text.clone(),
                language: status.language.clone(),
                alt_text,
                model: model.clone(),
                state: state.to_owned(),
                error,
                created_at: now,
                updated_at: now,
                prompt_version: crate::captioning::prompt::VERSION,
            });
        }
        // An image that could not be described (the instance away a moment, say) is tried again
        // later with the post; its draft says why meanwhile.
        let failed = made
            .iter()
            .filter(|d| d.state == drafts::GENERATION_FAILED)
            .count();
        let again = (failed > 0 && job.attempts < MAX_ATTEMPTS).then(|| {
            (
                store::now() + 5 * 2_i64.pow(job.attempts.clamp(0, 8) as u32),
                format!("{failed} image(s) could not be described; tried again later"),
            )
        });
        self.end_post(job, made, again).await?;
        if settings.processing_delay > 0.0 {
            let until = store::now() + settings.processing_delay.ceil() as i64;
            if let Ok(mut conn) = inner.db.conn().await {
                let _ = post_jobs::delay_connection(&mut conn, job.platform_id, until).await;
            }
        }
        Ok(())
    }

    /// Commits a post's drafts with its job's end, while the job is this worker's and as the
    /// database says now: a post deleted meanwhile gets nothing; one edited meanwhile is given back
    /// (the next pass drafts what the edit added); watching turned off, or the person deactivated,
    /// ends it with nothing kept; "publish without review" as it is set now approves the new
    /// drafts and sends the post to publishing in the same transaction.
    /// `again`: when, and why, to take the post up once more (an image failed) instead of ending.
    async fn end_post(
        &self,
        job: &PostJob,
        made: Vec<NewDraft>,
        again: Option<(i64, String)>,
    ) -> Result<(), PostFailure> {
        let owner = &self.inner.id;
        let until = store::now_ms() + self.inner.config.lease.as_millis() as i64;
        let mut conn = self.inner.db.conn().await.map_err(PostFailure::store)?;
        let ended = crate::write_tx!(conn, {
            if !post_jobs::renew(&mut conn, job.id, owner, until).await? {
                return Ok(None);
            }
            let now = post_jobs::get(&mut conn, job.id).await?;
            match now {
                Some(now) if now.state != post_jobs::QUEUED => {
                    post_jobs::release(&mut conn, job.id, owner).await?;
                    return Ok(Some(Ended::Dropped("the post was deleted")));
                }
                Some(now) if now.status_json != job.status_json => {
                    post_jobs::release(&mut conn, job.id, owner).await?;
                    return Ok(Some(Ended::Dropped("the post was edited; drafted again")));
                }
                None => return Ok(None),
                Some(_) => {}
            }
            let watch = watches::get(&mut conn, job.platform_id).await?;
            let active = store::users::by_id(&mut conn, job.user_id)
                .await?
                .is_some_and(|u| u.active);
            let Some(watch) = watch.filter(|w| w.enabled && active) else {
                post_jobs::finish(
                    &mut conn,
                    job.id,
                    owner,
                    post_jobs::DONE,
                    Some("watching was turned off, or its person deactivated"),
                )
                .await?;
                return Ok(Some(Ended::Dropped(
                    "watching was turned off, or its person deactivated",
                )));
            };
            let mut new_ids = Vec::new();
            for draft in &made {
                if drafts::put(&mut conn, draft).await? && draft.state == drafts::PENDING {
                    new_ids.push(draft.media_id.clone());
                }
            }
            let mut approved = 0;
            if watch.auto_publish && !new_ids.is_empty() {
                let ids: Vec<i64> = drafts::for_media(&mut conn, job.platform_id, &new_ids)
                    .await?
                    .into_iter()
                    .map(|d| d.id)
                    .collect();
                approved = drafts::approve_unreviewed(&mut conn, &ids).await?;
                if approved > 0 {
                    store::publish::request(
                        &mut conn,
                        job.user_id,
                        job.platform_id,
                        &job.status_id,
                    )
                    .await?;
                }
            }
            match &again {
                Some((at, why)) => {
                    post_jobs::retry_later(&mut conn, job.id, owner, *at, Some(why), true).await?;
                }
                None => {
                    post_jobs::finish(&mut conn, job.id, owner, post_jobs::DONE, None).await?;
                }
            }
            Ok(Some(Ended::Drafted {
                drafts: new_ids.len(),
                approved,
            }))
        })?;
        drop(conn);
        match ended {
            None => Err(PostFailure::Lost),
            Some(Ended::Dropped(why)) => {
                tracing::info!(
                    job = job.id,
                    platform = job.platform_id,
                    why,
                    "a new post's job ended without drafts"
                );
                Err(PostFailure::Ended)
            }
            Some(Ended::Drafted { drafts, approved }) => {
                tracing::info!(
                    job = job.id,
                    platform = job.platform_id,
                    drafts,
                    published_without_review = approved,
                    "a new post drafted"
                );
                self.inner.runs.waiting.changed(UserId(job.user_id)).await;
                if approved > 0 {
                    self.inner.runs.wake.notify_one();
                }
                Ok(())
            }
        }
    }
}

/// How a post's job ended.
enum Ended {
    /// Nothing kept, and why.
    Dropped(&'static str),
    Drafted {
        drafts: usize,
        approved: usize,
    },
}

enum PostFailure {
    /// The job is no longer this worker's (or the database failed): its lease runs out and it
    /// is taken up again.
    Lost,
    /// The job ended already (deleted, given back, or watching turned off): nothing to record.
    Ended,
    Fatal(String),
    /// Try again later (the model away).
    Later(String),
}

impl PostFailure {
    fn store(error: StoreError) -> PostFailure {
        tracing::debug!(error = %error, "a new post's job stopped on a database error");
        PostFailure::Lost
    }
}

impl From<StoreError> for PostFailure {
    fn from(error: StoreError) -> PostFailure {
        PostFailure::store(error)
    }
}

/// What a post's job needs of it: the post with only its images that need a description (others'
/// descriptions can be long; they are not kept). None when it has none.
fn to_draft(status: &Status) -> Option<Status> {
    let media: Vec<_> = status
        .media
        .iter()
        .filter(|m| m.is_image() && m.undescribed())
        .cloned()
        .collect();
    (!media.is_empty()).then(|| Status {
        media,
        ..status.clone()
    })
}

impl Watching {
    fn poll_every(&self) -> Duration {
        self.worker.inner.config.watch_poll
    }

    /// Mastodon: the user stream, caught up before each read; polling while it fails. (Everything
    /// but the reading is boxed: an idle watcher's task holds only what reading needs, which is
    /// what 1,000 watched accounts cost in memory.)
    async fn stream(&mut self) -> Halt {
        let mut failures = 0u32;
        // Streams that opened and soon ended, in a row.
        let mut drops = 0u32;
        let mut base: Option<String> = None;
        loop {
            let outcome = self.stream_once(&mut base, &mut failures, &mut drops).await;
            let wait = match outcome {
                Ok(()) => Duration::ZERO,
                Err(trouble) => match Box::pin(self.trouble(trouble)).await {
                    Ok(wait) => wait,
                    Err(halt) => return halt,
                },
            };
            let wait = wait.max(backoff(failures, self.poll_every()));
            if self.stop.sleep(wait).await.is_err() {
                return Halt::Stopped;
            }
        }
    }

    async fn stream_once(
        &mut self,
        base: &mut Option<String>,
        failures: &mut u32,
        drops: &mut u32,
    ) -> Result<(), Trouble> {
        let instances = self.worker.inner.instances.clone();
        let root = match base {
            Some(b) => b.clone(),
            None => {
                let found = self
                    .stop
                    .or_stop(instances.streaming_base(&self.instance))
                    .await?
                    .map_err(|e| self.platform_trouble(e))?;
                *base = Some(found.clone());
                found
            }
        };
        let opened = self
            .stop
            .or_stop(instances.user_stream(&root, &self.token))
            .await?;
        let response = match opened {
            Ok(response) => response,
            Err(PlatformError::RateLimited { retry_after }) => {
                *failures += 1;
                Box::pin(self.catch_up()).await?;
                Box::pin(self.note(Some(POLL), None)).await?;
                return Err(Trouble::Wait(rate_wait(retry_after)));
            }
            Err(PlatformError::InvalidToken) => return Err(Halt::TokenRefused.into()),
            Err(error) => {
                // No stream here (or not now): poll, and try the stream again after a while.
                tracing::debug!(platform = self.platform_id, error = %error, "the stream did not open");
                *failures += 1;
                *base = None;
                Box::pin(self.catch_up()).await?;
                return Box::pin(self.note(Some(POLL), None)).await;
            }
        };
        let opened_at = Instant::now();
        // Posts made while no stream was open (the stream is already collecting new ones).
        Box::pin(self.catch_up()).await?;
        // A stream that keeps ending soon after it opens is not called live until one lasts.
        let live = *drops < PROBLEM_AFTER;
        let mode = if live { STREAM } else { POLL };
        Box::pin(self.note(Some(mode), None)).await?;
        let read = self.read_stream(response, opened_at, live).await;
        if opened_at.elapsed() >= HEALTHY_STREAM {
            (*failures, *drops) = (0, 0);
        } else {
            *failures += 1;
            *drops += 1;
        }
        read
    }

    /// Reads events until the stream ends or stays silent too long. A stream that sends more than
    /// `STREAM_BUDGET` bytes in a `BUDGET_WINDOW` is dropped (a hostile or broken instance must not
    /// take a worker's core); one that lasts is marked live (`live`: already marked).
    async fn read_stream(
        &mut self,
        mut response: reqwest::Response,
        opened_at: Instant,
        mut live: bool,
    ) -> Result<(), Trouble> {
        let mut parser = SseParser::default();
        let (mut window, mut spent, mut events_seen) = (Instant::now(), 0usize, 0usize);
        loop {
            let chunk = self
                .stop
                .or_stop(tokio::time::timeout(SILENT_STREAM, response.chunk()))
                .await?;
            let bytes = match chunk {
                Err(_) => return Ok(()), // silent too long: open it again
                Ok(Err(_)) | Ok(Ok(None)) => return Ok(()),
                Ok(Ok(Some(bytes))) => bytes,
            };
            if window.elapsed() >= BUDGET_WINDOW {
                (window, spent, events_seen) = (Instant::now(), 0, 0);
            }
            spent += bytes.len();
            if spent > STREAM_BUDGET || events_seen > EVENT_BUDGET {
                return Err(Trouble::Transient(
                    "the instance's stream sent far more than one account's events".into(),
                ));
            }
            if !live && opened_at.elapsed() >= HEALTHY_STREAM {
                live = true;
                Box::pin(self.note(Some(STREAM), None)).await?;
            }
            let Ok(events) = parser.push(&bytes) else {
                return Err(Trouble::Transient(
                    "the stream sent an event too long to read".into(),
                ));
            };
            events_seen += events.len();
            for event in events {
                match event.name.as_str() {
                    // A stream event names its author; one that does not is nobody's own post.
                    "update" => {
                        if let Some(status) = crate::platforms::statuses::parse_status(&event.data)
                            .filter(|s| s.account_id.is_some())
                        {
                            Box::pin(self.found(vec![status], None)).await?;
                        }
                    }
                    "status.update" => {
                        if let Some(status) = crate::platforms::statuses::parse_status(&event.data)
                            .filter(|s| s.account_id.is_some())
                        {
                            Box::pin(self.edited(status)).await?;
                        }
                    }
                    "delete" => Box::pin(self.deleted(event.data.trim().to_owned())).await?,
                    _ => {}
                }
            }
        }
    }

    /// Pixelfed: the account's new posts, every poll interval.
    async fn poll(&mut self) -> Halt {
        loop {
            let outcome = async {
                self.catch_up().await?;
                self.note(Some(POLL), None).await
            }
            .await;
            let wait = match outcome {
                Ok(()) => Duration::ZERO,
                Err(trouble) => match self.trouble(trouble).await {
                    Ok(wait) => wait,
                    Err(halt) => return halt,
                },
            };
            if self.stop.sleep(wait.max(self.poll_every())).await.is_err() {
                return Halt::Stopped;
            }
        }
    }

    /// What to do about a trouble: how long to wait before going on, or stop.
    async fn trouble(&mut self, trouble: Trouble) -> Result<Duration, Halt> {
        match trouble {
            Trouble::Halt(halt) => Err(halt),
            Trouble::Wait(wait) => Ok(wait),
            Trouble::Transient(why) => {
                self.failures += 1;
                let since = *self.failing_since.get_or_insert_with(store::now);
                tracing::debug!(platform = self.platform_id, failures = self.failures, why = %why, "watching an account failed for now");
                if self.failures >= PROBLEM_AFTER {
                    let words = format!(
                        "since {}, {why}. fedialt keeps trying (and catches up on the posts \
                         made meanwhile once it can).",
                        crate::web::when(since)
                    );
                    // No stream is open while this lasts: the account is checked, not live.
                    if let Err(Trouble::Halt(halt)) = self.note(Some(POLL), Some(&words)).await {
                        return Err(halt);
                    }
                }
                Ok(backoff(self.failures, self.poll_every()))
            }
            Trouble::Store(error) => {
                tracing::debug!(platform = self.platform_id, error = %error, "watching waits for the database");
                Ok(backoff(3, self.poll_every()))
            }
        }
    }

    fn platform_trouble(&self, error: PlatformError) -> Trouble {
        match error {
            PlatformError::InvalidToken => Halt::TokenRefused.into(),
            PlatformError::RateLimited { retry_after } => Trouble::Wait(rate_wait(retry_after)),
            PlatformError::Unreachable(_) => {
                Trouble::Transient("the instance has not answered".into())
            }
            PlatformError::Instance { status } => Trouble::Transient(format!(
                "the instance has answered with errors (HTTP {status})"
            )),
            PlatformError::NotMastodonApi => Trouble::Transient(
                "the instance's answers are not what Mastodon or Pixelfed send".into(),
            ),
            PlatformError::PrivateAddress => Trouble::Transient(
                "the instance's address is private, which fedialt does not connect to".into(),
            ),
            other => Trouble::Transient(other.to_string()),
        }
    }

    /// The account's posts since the last one handled (on the first look: the newest page, of
    /// which the posts made since watching began are new).
    async fn catch_up(&mut self) -> Result<(), Trouble> {
        let worker = self.worker.clone();
        let _turn = self
            .stop
            .or_stop(worker.inner.catching_up.acquire())
            .await?
            .map_err(|_| Halt::Stopped)?;
        let instances = self.worker.inner.instances.clone();
        let mut found: Vec<Status> = Vec::new();
        // On a first look: the newest post, which moves the cursor even though it is not new.
        let mut newest: Option<String> = None;
        fn note_newest(id: &str, newest: &mut Option<String>) {
            if newest.as_deref().is_none_or(|n| older(n, id)) {
                *newest = Some(id.to_owned());
            }
        }
        match self.cursor.clone() {
            None => {
                let page = self.fetch(&instances, &Cursor::Start).await?;
                for status in page.into_iter().filter(|s| self.is_own(s)) {
                    // The first look: the newest post moves the cursor, new or not.
                    note_newest(&status.id, &mut newest);
                    if status.created_at.is_some_and(|t| t + 1 >= self.since) {
                        found.push(status);
                    }
                }
            }
            Some(since) => {
                let mut below: Option<String> = None;
                for _ in 0..MAX_CATCH_UP_PAGES {
                    let cursor = Cursor::Newer {
                        since: since.clone(),
                        below: below.clone(),
                    };
                    let page = self.fetch(&instances, &cursor).await?;
                    let fresh: Vec<Status> = page
                        .into_iter()
                        .filter(|s| older(&since, &s.id))
                        .filter(|s| below.as_deref().is_none_or(|b| older(&s.id, b)))
                        .collect();
                    let Some(oldest) = fresh.iter().map(|s| s.id.clone()).reduce(|a, b| {
                        if older(&a, &b) {
                            a
                        } else {
                            b
                        }
                    }) else {
                        break;
                    };
                    found.extend(fresh);
                    below = Some(oldest);
                }
            }
        }
        self.found(found, newest).await?;
        self.failures = 0;
        self.failing_since = None;
        Ok(())
    }

    /// One page of the account's posts; rate limits waited out.
    async fn fetch(
        &mut self,
        instances: &crate::platforms::InstanceClient,
        cursor: &Cursor,
    ) -> Result<Vec<Status>, Trouble> {
        let mut tries = 0;
        loop {
            let result = self
                .stop
                .or_stop(instances.statuses(&self.instance, &self.token, &self.account_id, cursor))
                .await?;
            match result {
                Ok(page) => {
                    if let Some(pause) = page.pause {
                        self.stop.sleep(pause.min(LONGEST_RATE_WAIT)).await?;
                    }
                    return Ok(page.statuses);
                }
                Err(PlatformError::RateLimited { retry_after }) if tries < RATE_LIMIT_TRIES => {
                    tries += 1;
                    self.stop.sleep(rate_wait(retry_after)).await?;
                }
                Err(error) => return Err(self.platform_trouble(error)),
            }
        }
    }

    fn is_own(&self, status: &Status) -> bool {
        status
            .account_id
            .as_deref()
            .is_none_or(|a| a == self.account_id)
    }

    /// The person's own new posts (a home stream carries everyone's: others' are ignored): those
    /// with undescribed images queued, one job per post, and the cursor moved forward to the
    /// newest of them (or to `first_look`, the newest post a first look saw), in one transaction
    /// while the watch is this worker's. A stream's posts are taken whatever the cursor says
    /// (events may come out of order; a post queued twice is still one job).
    async fn found(
        &mut self,
        statuses: Vec<Status>,
        first_look: Option<String>,
    ) -> Result<(), Trouble> {
        let own: Vec<Status> = statuses
            .into_iter()
            .filter(|s| self.is_own(s) && !s.is_reblog)
            .collect();
        let newest = own
            .iter()
            .map(|s| s.id.clone())
            .chain(first_look)
            .reduce(|a, b| if older(&a, &b) { b } else { a })
            .filter(|n| self.cursor.as_deref().is_none_or(|c| older(c, n)));
        let jobs: Vec<(String, String)> = own
            .iter()
            .filter_map(|s| {
                let wanted = to_draft(s)?;
                Some((s.id.clone(), serde_json::to_string(&wanted).ok()?))
            })
            .collect();
        if jobs.is_empty() && newest.is_none() {
            return Ok(());
        }
        let seen = newest
            .as_ref()
            .and_then(|n| own.iter().find(|s| &s.id == n))
            .map(|s| (s.id.clone(), s.url.clone()));
        let (platform_id, user_id) = (self.platform_id, self.user_id);
        let owner = self.worker.inner.id.clone();
        let cursor = newest.clone();
        let mode = self.mode.clone();
        let problem = self.problem.clone();
        let queued_count = jobs.len();
        let held = self
            .worker
            .inner
            .watches
            .write(move |conn| {
                Box::pin(async move {
                    let row = match (&seen, &cursor) {
                        (Some((id, url)), _) => {
                            let row = watches::record(
                                conn,
                                platform_id,
                                &owner,
                                Some((id, url)),
                                mode.as_deref(),
                                problem.as_deref(),
                            )
                            .await?;
                            if row.is_none() {
                                return Ok((false, None));
                            }
                            row
                        }
                        (None, Some(cursor)) => {
                            if !watches::set_cursor(conn, platform_id, &owner, cursor).await? {
                                return Ok((false, None));
                            }
                            None
                        }
                        (None, None) => {
                            if !watches::holds(conn, platform_id, &owner).await? {
                                return Ok((false, None));
                            }
                            None
                        }
                    };
                    for (status_id, json) in &jobs {
                        post_jobs::enqueue(conn, user_id, platform_id, status_id, json).await?;
                    }
                    Ok((true, row))
                })
            })
            .await?;
        if !held {
            return Err(Halt::Stopped.into());
        }
        if let Some(newest) = newest {
            self.cursor = Some(newest);
        }
        if queued_count > 0 {
            tracing::info!(
                platform = self.platform_id,
                posts = queued_count,
                "new posts queued for drafting"
            );
            self.worker.inner.runs.wake.notify_one();
        }
        Ok(())
    }

    /// A post edited on the instance (one made since watching began): queued again only when an
    /// image in it has neither a description nor a draft (images added to it). fedialt's own edits describe images that
    /// have drafts, so they never come back here as work.
    async fn edited(&mut self, status: Status) -> Result<(), Trouble> {
        // Only posts made since watching began: an old post's images are for runs.
        let new = status.created_at.is_some_and(|t| t + 1 >= self.since);
        if !self.is_own(&status) || status.is_reblog || !new {
            return Ok(());
        }
        let undescribed: Vec<String> = status
            .media
            .iter()
            .filter(|m| m.is_image() && m.undescribed())
            .map(|m| m.id.clone())
            .collect();
        if undescribed.is_empty() {
            return Ok(());
        }
        let Some(Ok(json)) = to_draft(&status).map(|s| serde_json::to_string(&s)) else {
            return Ok(());
        };
        let (platform_id, user_id) = (self.platform_id, self.user_id);
        let mut conn = self.worker.inner.db.conn().await?;
        let queued = crate::write_tx!(conn, {
            let drafted = drafts::for_media(&mut conn, platform_id, &undescribed).await?;
            if drafted.len() >= undescribed.len() {
                return Ok::<bool, StoreError>(false);
            }
            post_jobs::requeue_edited(&mut conn, user_id, platform_id, &status.id, &json).await
        })?;
        if queued {
            self.worker.inner.runs.wake.notify_one();
        }
        Ok(())
    }

    /// A post deleted on the instance: its undecided drafts and its queued job go.
    async fn deleted(&mut self, status_id: String) -> Result<(), Trouble> {
        if status_id.is_empty() || status_id.len() > 64 {
            return Ok(());
        }
        let platform_id = self.platform_id;
        let mut conn = self.worker.inner.db.conn().await?;
        // Most deletes on a home stream are other people's posts: a read, and no write for them.
        if !post_jobs::knows_post(&mut conn, platform_id, &status_id).await? {
            return Ok(());
        }
        crate::write_tx!(conn, {
            drafts::drop_undecided_of_post(&mut conn, platform_id, &status_id).await?;
            post_jobs::drop_post(&mut conn, platform_id, &status_id).await?;
            Ok::<(), StoreError>(())
        })?;
        drop(conn);
        self.worker
            .inner
            .runs
            .waiting
            .changed(UserId(self.user_id))
            .await;
        Ok(())
    }

    /// Writes how the account is watched and what troubles it, when that changed.
    async fn note(&mut self, mode: Option<&str>, problem: Option<&str>) -> Result<(), Trouble> {
        if self.mode.as_deref() == mode && self.problem.as_deref() == problem {
            return Ok(());
        }
        let (platform_id, owner) = (self.platform_id, self.worker.inner.id.clone());
        let (m, p) = (mode.map(str::to_owned), problem.map(str::to_owned));
        let written = self
            .worker
            .inner
            .watches
            .write(move |conn| {
                Box::pin(async move {
                    let row = watches::record(
                        conn,
                        platform_id,
                        &owner,
                        None,
                        m.as_deref(),
                        p.as_deref(),
                    )
                    .await?;
                    Ok((row.is_some(), row))
                })
            })
            .await?;
        if !written {
            return Err(Halt::Stopped.into());
        }
        if self.mode.as_deref() != mode {
            tracing::info!(
                platform = self.platform_id,
                mode = mode.unwrap_or("none"),
                "watching an account"
            );
        }
        if let Some(problem) = problem.filter(|p| self.problem.as_deref() != Some(*p)) {
            tracing::warn!(
                platform = self.platform_id,
                problem,
                "watching an account is troubled"
            );
        }
        self.mode = mode.map(str::to_owned);
        self.problem = problem.map(str::to_owned);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let cap = Duration::from_secs(300);
        for failures in 0..30 {
            let wait = backoff(failures, cap);
            let full = FIRST_BACKOFF
                .saturating_mul(2u32.saturating_pow(failures.min(20)))
                .min(cap);
            assert!(wait <= full && wait >= full / 2, "{failures}: {wait:?}");
        }
        assert!(backoff(40, cap) >= Duration::from_secs(150));
    }
}
