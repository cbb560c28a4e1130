//! One caption run, carried out: verify the connection, read the account's posts page by page,
//! draft a description of every image without one, commit after each image and each post.
//!
//! Resuming: a post's end moves `resume_after` to its id (the timeline is newest first, so the
//! next worker reads the posts older than it), and each image's draft is committed with the run's
//! counters in one transaction; an image that already has this run's draft is not drafted again.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use super::{Worker, CHECK_EVERY, MAX_ATTEMPTS};
use crate::captioning::ModelError;
use crate::crypto::{token_binding, ACCESS_TOKEN};
use crate::domain::{CaptionSettings, InstanceUrl, RunId, UserId};
use crate::platforms::statuses::{Cursor, Media, Status};
use crate::platforms::PlatformError;
use crate::store::drafts::{DraftRow, NewDraft};
use crate::store::runs::{Progress, RunRow};
use crate::store::{self, StoreError};

/// Waits an instance asks for longer than this end the run for now (it is retried later).
const LONGEST_RATE_WAIT: Duration = Duration::from_secs(15 * 60);
/// Rate-limited answers in a row before the run gives up for now.
const RATE_LIMIT_TRIES: u32 = 5;

/// The run was cancelled, taken over, or the worker is stopping.
#[derive(Debug)]
struct Stopped;

enum Failure {
    Stopped,
    /// Ends the run: says why, in words for people.
    Fatal(String),
    /// Worth trying again later.
    Transient(String),
    Store(StoreError),
}

impl From<Stopped> for Failure {
    fn from(_: Stopped) -> Failure {
        Failure::Stopped
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Store(e)
    }
}

#[derive(Clone)]
struct Stop(watch::Receiver<bool>);

impl Stop {
    fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// `work`, unless the stop comes first (then `work` is dropped: an HTTP call, a pause).
    async fn or_stop<F: std::future::Future>(&self, work: F) -> Result<F::Output, Stopped> {
        let mut rx = self.0.clone();
        tokio::select! {
            biased;
            _ = rx.wait_for(|stop| *stop) => Err(Stopped),
            out = work => Ok(out),
        }
    }
}

/// Why an image got no description.
enum NotDescribed {
    /// This image: kept as a failed draft with the reason, and the run goes on.
    Image(String),
    /// The model server is away: the run waits and goes on later; the image is not marked.
    ModelAway(String),
}

/// What the run has counted so far (as committed).
struct Counts {
    scanned: i32,
    seen: i32,
}

impl Worker {
    /// Carries out a claimed run to its end, or until it is stopped, and records how it ended.
    pub(super) async fn execute(self, row: RunRow) {
        let inner = &self.inner;
        let run = RunId(row.id);
        let stop = Stop(inner.runs.stops.register(row.id));
        let (done_tx, done_rx) = watch::channel(false);
        let keeper = tokio::spawn(self.clone().keep_lease(run, done_rx));
        let outcome = self.carry_out(&row, &stop).await;
        let _ = done_tx.send(true);
        let _ = keeper.await;
        inner.runs.stops.forget(row.id);
        let owner = inner.id.as_str();
        let recorded = match outcome {
            Ok(step) => {
                inner
                    .runs
                    .finish(run, owner, store::runs::COMPLETED, step, None)
                    .await
            }
            Err(Failure::Stopped) => {
                // Cancelled or taken over: the run is not ours to write. Still ours: the worker
                // is stopping, and the run goes back to the queue for another.
                inner
                    .runs
                    .requeue(run, owner, store::now(), "Waiting for a worker".into())
                    .await
            }
            Err(Failure::Fatal(reason)) => {
                inner
                    .runs
                    .finish(
                        run,
                        owner,
                        store::runs::FAILED,
                        "Stopped: the reason is below".into(),
                        Some(reason),
                    )
                    .await
            }
            Err(Failure::Transient(reason))
            | Err(Failure::Store(StoreError::Unavailable(reason)))
                if row.attempts < MAX_ATTEMPTS =>
            {
                let backoff = 5 * 2_i64.pow(row.attempts.clamp(0, 8) as u32);
                inner
                    .runs
                    .requeue(
                        run,
                        owner,
                        store::now() + backoff,
                        format!(
                            "Trying again in {backoff} s (attempt {} of {MAX_ATTEMPTS}): {reason}",
                            row.attempts + 1
                        ),
                    )
                    .await
            }
            Err(Failure::Transient(reason)) => {
                inner
                    .runs
                    .finish(
                        run,
                        owner,
                        store::runs::FAILED,
                        "Stopped: the reason is below".into(),
                        Some(reason),
                    )
                    .await
            }
            Err(Failure::Store(error)) => {
                tracing::warn!(run = row.id, error = %error, "a run stopped on a database error");
                inner
                    .runs
                    .finish(
                        run,
                        owner,
                        store::runs::FAILED,
                        "Stopped: the reason is below".into(),
                        Some("fedialt's database failed during the run; start it again".into()),
                    )
                    .await
            }
        };
        if let Err(error) = recorded {
            // The lease runs out and another worker takes the run up from its last post.
            tracing::warn!(run = row.id, error = %error, "how the run ended could not be recorded");
        }
    }

    /// Checks every CHECK_EVERY that the run is still this worker's and renews the lease at a third
    /// of its length; stops the run when it is not (cancelled, deleted, taken over).
    async fn keep_lease(self, run: RunId, mut done: watch::Receiver<bool>) {
        let inner = &self.inner;
        let renew_every = inner.config.lease / 3;
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = done.changed() => return,
            }
            if *done.borrow() {
                return;
            }
            let held = match inner.db.conn().await {
                Ok(mut conn) => {
                    if last_renewal.elapsed() >= renew_every {
                        let until = store::now_ms() + inner.config.lease.as_millis() as i64;
                        let held = store::runs::renew(&mut conn, run.get(), &inner.id, until).await;
                        if matches!(held, Ok(true)) {
                            last_renewal = tokio::time::Instant::now();
                        }
                        held
                    } else {
                        store::runs::still_held(&mut conn, run.get(), &inner.id).await
                    }
                }
                Err(e) => Err(e),
            };
            if let Ok(false) = held {
                inner.runs.stops.stop(run.get());
                return;
            }
        }
    }

    async fn step(&self, run: RunId, text: String) -> Result<(), Failure> {
        let progress = Progress {
            step: Some(text),
            ..Progress::default()
        };
        match self
            .inner
            .runs
            .advance(run, &self.inner.id, progress)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(Failure::Stopped),
        }
    }

    /// A call to the instance: rate limits waited out (up to a point), a refused token marks the
    /// connection as needing a new one.
    async fn instance_call<T, F, Fut>(
        &self,
        run: RunId,
        row: &RunRow,
        stop: &Stop,
        call: F,
    ) -> Result<T, Failure>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, PlatformError>>,
    {
        let mut tries = 0;
        loop {
            match stop.or_stop(call()).await? {
                Ok(value) => return Ok(value),
                Err(PlatformError::RateLimited { retry_after }) => {
                    tries += 1;
                    let wait = Duration::from_secs(retry_after.unwrap_or(60));
                    if tries >= RATE_LIMIT_TRIES || wait > LONGEST_RATE_WAIT {
                        return Err(Failure::Transient(
                            "the instance is rate limiting fedialt; the run goes on later".into(),
                        ));
                    }
                    self.step(
                        run,
                        format!(
                            "Waiting {} s: the instance asked fedialt to slow down",
                            wait.as_secs()
                        ),
                    )
                    .await?;
                    stop.or_stop(tokio::time::sleep(wait)).await?;
                }
                Err(PlatformError::InvalidToken) => {
                    self.mark_needs_reauth(row).await;
                    return Err(Failure::Fatal(
                        "The instance refused fedialt's access: this connection needs a new \
                         token. Connect the account again on Connected accounts."
                            .into(),
                    ));
                }
                Err(PlatformError::Unreachable(detail)) => {
                    return Err(Failure::Transient(format!(
                        "the instance did not answer ({detail})"
                    )))
                }
                Err(PlatformError::Instance {
                    status: status @ 500..,
                }) => {
                    return Err(Failure::Transient(format!(
                        "the instance answered with an error (HTTP {status})"
                    )))
                }
                Err(e) => return Err(Failure::Fatal(crate::platforms::connect::explain(&e))),
            }
        }
    }

    async fn mark_needs_reauth(&self, row: &RunRow) {
        let platform_id = row.platform_id;
        let written = self
            .inner
            .platforms
            .write(UserId(row.user_id), Vec::new(), move |conn| {
                Box::pin(async move {
                    store::platforms::set_needs_reauth(conn, platform_id, true).await
                })
            })
            .await;
        if let Err(error) = written {
            tracing::warn!(error = %error, "could not mark the connection as needing a new token");
        }
    }

    /// The run itself; Ok with the last step's words when it ran to its end.
    async fn carry_out(&self, row: &RunRow, stop: &Stop) -> Result<String, Failure> {
        let inner = &self.inner;
        let run = RunId(row.id);
        let settings: CaptionSettings = serde_json::from_str(&row.settings)
            .map_err(|_| Failure::Fatal("the run's settings could not be read".into()))?;
        let platform = {
            let mut conn = inner.db.conn().await?;
            store::platforms::owned(&mut conn, row.platform_id, row.user_id).await?
        }
        .ok_or_else(|| Failure::Fatal("the connection was removed".into()))?;
        let instance = InstanceUrl::parse(&platform.instance_url, |_| true)
            .map_err(|_| Failure::Fatal("the connection's instance address is not valid".into()))?;
        let token = inner
            .secrets
            .open(
                &token_binding(ACCESS_TOKEN, platform.id, platform.user_id),
                &platform.access_token_enc,
            )
            .map_err(|_| {
                Failure::Fatal(
                    "the connection's token could not be read (was FEDIALT_SECRET_KEY changed?); \
                     connect the account again"
                        .into(),
                )
            })?;
        let settings = settings.clamped_to(platform.description_limit.max(0) as u32);

        self.step(run, "Checking the connection".into()).await?;
        let account = self
            .instance_call(run, row, stop, || {
                inner.instances.verify_credentials(&instance, &token)
            })
            .await?;

        let limit = row.posts_limit.max(1);
        let seen_cap = limit.saturating_mul(10);
        let mut counts = Counts {
            scanned: row.posts_scanned,
            seen: row.posts_seen,
        };
        let mut cursor = match &row.resume_after {
            Some(id) => Cursor::OlderThan(id.clone()),
            None => Cursor::Start,
        };
        let mut worked = false;
        let mut pause: Option<Duration> = None;
        'pages: loop {
            if counts.scanned >= limit || counts.seen >= seen_cap {
                break;
            }
            if let Some(wait) = pause.take() {
                if wait > LONGEST_RATE_WAIT {
                    return Err(Failure::Transient(
                        "the instance is rate limiting fedialt; the run goes on later".into(),
                    ));
                }
                self.step(
                    run,
                    format!("Waiting {} s for the instance's rate limit", wait.as_secs()),
                )
                .await?;
                stop.or_stop(tokio::time::sleep(wait)).await?;
            }
            self.step(run, "Reading your posts".into()).await?;
            let page = self
                .instance_call(run, row, stop, || {
                    inner
                        .instances
                        .statuses(&instance, &token, &account.id, &cursor)
                })
                .await?;
            pause = page.pause;
            let Some(last) = page.statuses.last().map(|s| s.id.clone()) else {
                break;
            };
            let media_ids: Vec<String> = page
                .statuses
                .iter()
                .flat_map(|s| s.media.iter().map(|m| m.id.clone()))
                .collect();
            let existing: HashMap<String, DraftRow> = {
                let mut conn = inner.db.conn().await?;
                store::drafts::for_media(&mut conn, row.platform_id, &media_ids).await?
            }
            .into_iter()
            .map(|d| (d.media_id.clone(), d))
            .collect();
            for status in &page.statuses {
                if counts.scanned >= limit || counts.seen >= seen_cap {
                    break 'pages;
                }
                if stop.is_set() {
                    return Err(Failure::Stopped);
                }
                let skipped = if status.is_reblog {
                    0
                } else {
                    status.media.iter().filter(|m| !m.is_image()).count() as i32
                };
                let wanted: Vec<&Media> = if status.is_reblog {
                    Vec::new()
                } else {
                    status
                        .media
                        .iter()
                        .filter(|m| m.is_image() && m.undescribed())
                        .filter(|m| match existing.get(&m.id) {
                            None => true,
                            // Drafted by this run already (it is being resumed).
                            Some(d) if d.run_id == Some(row.id) => false,
                            // A failed draft is tried again; others only when reprocessing.
                            Some(d) => {
                                d.replaceable()
                                    && (settings.reprocess_existing
                                        || d.state == store::drafts::GENERATION_FAILED)
                            }
                        })
                        .collect()
                };
                let drafted_here = status.media.iter().any(|m| {
                    existing
                        .get(&m.id)
                        .is_some_and(|d| d.run_id == Some(row.id))
                });
                if wanted.is_empty() && !drafted_here {
                    let needs_description = !status.is_reblog
                        && status.media.iter().any(|m| m.is_image() && m.undescribed());
                    if needs_description {
                        // Every image of it has a draft of fedialt's already: ground covered
                        // before, read past without counting, so the next run reaches further back.
                        continue;
                    }
                    // Nothing to do here: passed over, and not counted against the limit.
                    self.advance(
                        run,
                        Progress {
                            posts_seen: 1,
                            media_skipped: skipped,
                            resume_after: Some(status.id.clone()),
                            ..Progress::default()
                        },
                    )
                    .await?;
                    counts.seen += 1;
                    continue;
                }
                if worked && settings.processing_delay > 0.0 {
                    stop.or_stop(tokio::time::sleep(Duration::from_secs_f64(
                        settings.processing_delay,
                    )))
                    .await?;
                }
                worked = true;
                self.step(
                    run,
                    format!(
                        "Describing images in post {} of {limit}",
                        counts.scanned + 1
                    ),
                )
                .await?;
                self.draft_post(run, row, status, &wanted, &settings, stop)
                    .await?;
                self.advance(
                    run,
                    Progress {
                        posts_seen: 1,
                        posts_scanned: 1,
                        media_skipped: skipped,
                        resume_after: Some(status.id.clone()),
                        ..Progress::default()
                    },
                )
                .await?;
                counts.scanned += 1;
                counts.seen += 1;
            }
            cursor = match page.next {
                Some(link) => Cursor::Link(link),
                None => Cursor::OlderThan(last),
            };
        }
        Ok(if counts.scanned >= limit {
            format!("Finished: reached {limit} posts with images to describe")
        } else if counts.seen >= seen_cap {
            format!("Finished: looked at {seen_cap} posts")
        } else {
            "Finished: reached your oldest post".to_owned()
        })
    }

    async fn advance(&self, run: RunId, progress: Progress) -> Result<(), Failure> {
        match self
            .inner
            .runs
            .advance(run, &self.inner.id, progress)
            .await?
        {
            Some(_) => Ok(()),
            None => Err(Failure::Stopped),
        }
    }

    /// Drafts the post's images (at once, as far as the model slots allow), committing each
    /// draft as it comes.
    async fn draft_post(
        &self,
        run: RunId,
        row: &RunRow,
        status: &Status,
        wanted: &[&Media],
        settings: &CaptionSettings,
        stop: &Stop,
    ) -> Result<(), Failure> {
        let mut pending: FuturesUnordered<_> = wanted
            .iter()
            .map(|media| async move {
                let described = self.describe(media, status, settings).await;
                (*media, described)
            })
            .collect();
        loop {
            let next = stop.or_stop(pending.next()).await?;
            let Some((media, described)) = next else {
                return Ok(());
            };
            let now = store::now();
            let (state, alt_text, error) = match described {
                Ok(text) => (store::drafts::PENDING, text, None),
                Err(NotDescribed::Image(reason)) => (
                    store::drafts::GENERATION_FAILED,
                    String::new(),
                    Some(reason),
                ),
                Err(NotDescribed::ModelAway(reason)) => return Err(Failure::Transient(reason)),
            };
            let draft = NewDraft {
                run_id: Some(row.id),
                user_id: row.user_id,
                platform_id: row.platform_id,
                status_id: status.id.clone(),
                status_url: status.url.clone(),
                media_id: media.id.clone(),
                preview_url: media.preview_url.clone(),
                image_url: media.url.clone(),
                post_text: status.text.clone(),
                language: status.language.clone(),
                alt_text,
                model: self.inner.captioner.model().to_owned(),
                state: state.to_owned(),
                error,
                created_at: now,
                updated_at: now,
            };
            if self
                .inner
                .runs
                .record_draft(run, &self.inner.id, draft)
                .await?
                .is_none()
            {
                return Err(Failure::Stopped);
            }
        }
    }

    /// Downloads the image and asks the model.
    async fn describe(
        &self,
        media: &Media,
        status: &Status,
        settings: &CaptionSettings,
    ) -> Result<String, NotDescribed> {
        let inner = &self.inner;
        let image = inner
            .instances
            .download(&media.url, inner.config.max_image_bytes)
            .await
            .map_err(|e| NotDescribed::Image(e.to_string()))?;
        let _slot = inner
            .slots
            .acquire()
            .await
            .map_err(|_| NotDescribed::Image("the worker is stopping".to_owned()))?;
        inner
            .captioner
            .describe(&image, settings, &status.text, status.language.as_deref())
            .await
            .map_err(|e| match e {
                ModelError::Unreachable(reason) => NotDescribed::ModelAway(reason),
                ModelError::Transient(reason) => {
                    NotDescribed::Image(format!("the model failed after several tries: {reason}"))
                }
                ModelError::Refused(reason) => NotDescribed::Image(reason),
            })
    }
}
