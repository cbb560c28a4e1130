//! One caption run, carried out: verify the connection, read the account's posts page by page,
//! draft a description of every image without one, commit after each image and each post.
//!
//! Resuming: a post's end moves `resume_after` to its id (the timeline is newest first, so the
//! next worker reads the posts older than it), and each image's draft is committed with the run's
//! counters in one transaction; an image that already has this run's draft is not drafted again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Stop, Stopped, Worker, CHECK_EVERY, MAX_ATTEMPTS};
use crate::captioning::ModelError;
use crate::domain::{CaptionSettings, RunId};
use crate::platforms::statuses::{self, Cursor, Media, Status};
use crate::platforms::PlatformError;
use crate::store::drafts::{DraftRow, NewDraft};
use crate::store::runs::{Progress, RunRow};
use crate::store::{self, StoreError};

/// Waits an instance asks for longer than this end the run for now (it is retried later).
const LONGEST_RATE_WAIT: Duration = Duration::from_secs(15 * 60);
/// Rate-limited answers in a row before the run gives up for now.
const RATE_LIMIT_TRIES: u32 = 5;
/// Statuses one run reads at most, whatever the instance sends.
const MAX_STATUSES_READ: usize = 100_000;
/// Pages in a row with nothing new that a run follows the Link past.
const MAX_EMPTY_PAGES: usize = 5;

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

/// Why an image got no description.
pub(super) enum NotDescribed {
    /// This image: kept as a failed draft with the reason, and the run goes on.
    Image(String),
    /// The model server is away: the run waits and goes on later; the image is not marked.
    ModelAway(String),
}

/// What the run has counted so far.
struct Counts {
    scanned: i32,
    seen: i32,
}

/// A post taken up, waiting for its images' answers; committed in timeline order.
struct PostInFlight {
    seq: u64,
    id: String,
    remaining: usize,
    skipped: i32,
    with_work: bool,
}

/// One image's answer from the model (or why there is none).
struct Answer {
    seq: u64,
    post: Arc<Status>,
    media: Media,
    result: Result<String, NotDescribed>,
}

/// What a post asks of the run.
pub(super) enum Plan {
    /// Every image that needs a description has a draft of fedialt's (from an earlier run): ground
    /// covered before, read past without counting.
    Covered,
    /// Nothing to do (no image needing a description): counted as looked at.
    PassOver { skipped: i32 },
    /// Images to draft (possibly none left when resuming a post this run started).
    Work { wanted: Vec<Media>, skipped: i32 },
}

pub(super) fn plan_post(
    status: &Status,
    existing: &HashMap<String, DraftRow>,
    settings: &CaptionSettings,
    run_id: i64,
) -> Plan {
    if status.is_reblog {
        return Plan::PassOver { skipped: 0 };
    }
    let skipped = status
        .media
        .iter()
        .filter(|m| !m.is_image())
        .count()
        .min(i32::MAX as usize) as i32;
    let needing: Vec<&Media> = status
        .media
        .iter()
        .filter(|m| m.is_image() && m.undescribed())
        .collect();
    let wanted: Vec<Media> = needing
        .iter()
        .filter(|m| match existing.get(&m.id) {
            None => true,
            // Drafted by this run already (it is being resumed).
            Some(d) if d.run_id == Some(run_id) => false,
            // A failed draft is tried again; others only when reprocessing.
            Some(d) => {
                d.replaceable()
                    && (settings.reprocess_existing || d.state == store::drafts::GENERATION_FAILED)
            }
        })
        .map(|m| (*m).clone())
        .collect();
    let drafted_here = needing.iter().any(|m| {
        existing
            .get(&m.id)
            .is_some_and(|d| d.run_id == Some(run_id))
    });
    if !wanted.is_empty() || drafted_here {
        Plan::Work { wanted, skipped }
    } else if needing.is_empty() {
        Plan::PassOver { skipped }
    } else {
        Plan::Covered
    }
}

pub(super) use crate::platforms::statuses::older;

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
        let fail = |reason: String| {
            inner.runs.finish(
                run,
                owner,
                store::runs::FAILED,
                "Stopped: the reason is below".into(),
                Some(reason),
            )
        };
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
                    .hand_back(run, owner, "Waiting for a worker".into())
                    .await
            }
            Err(Failure::Fatal(reason)) => fail(reason).await,
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
            Err(Failure::Transient(reason)) => fail(reason).await,
            Err(Failure::Store(error)) => {
                tracing::warn!(run = row.id, error = %error, "a run stopped on a database error");
                fail("fedialt's database failed during the run; start it again".into()).await
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
                    self.mark_needs_reauth(row.user_id, row.platform_id).await;
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
        let (instance, token) = crate::platforms::connect::credentials(&inner.secrets, &platform)
            .map_err(|why| Failure::Fatal(why.words().into()))?;
        let settings = settings.clamped_to(platform.description_limit.max(0) as u32);

        self.step(run, "Checking the connection".into()).await?;
        let account = self
            .instance_call(run, row, stop, || {
                inner.instances.verify_credentials(&instance, &token)
            })
            .await?;

        let limit = row.posts_limit.max(1);
        let seen_cap = limit.saturating_mul(10);
        // Committed counts, and the same with the posts in flight.
        let mut counts = Counts {
            scanned: row.posts_scanned,
            seen: row.posts_seen,
        };
        let mut planned = Counts {
            scanned: row.posts_scanned,
            seen: row.posts_seen,
        };
        let mut cursor = match &row.resume_after {
            Some(id) => Cursor::OlderThan(id.clone()),
            None => Cursor::Start,
        };
        // Only posts older than the last one taken are taken: a page served twice, or a Link that
        // leads back, cannot make a run count a post twice or go on for ever.
        let mut last_taken: Option<String> = row.resume_after.clone();
        let mut page: VecDeque<Status> = VecDeque::new();
        let mut existing: HashMap<String, DraftRow> = HashMap::new();
        let mut timeline_done = false;
        let mut pause: Option<Duration> = None;
        let mut read = 0usize;
        let mut order: VecDeque<PostInFlight> = VecDeque::new();
        // Each image's download and model call is a task of its own, so it goes on while this loop
        // reads a page or waits out a rate limit (dropping the set aborts them: they hold no
        // database work).
        let mut answers: JoinSet<Answer> = JoinSet::new();
        // Media ids taken by this run (an instance may list one image under two posts).
        let mut taken_media: HashSet<String> = HashSet::new();
        let mut next_seq = 0u64;
        // A resumed run pauses before its first post too: the post before it was worked on.
        let mut worked = row.resume_after.is_some();
        // What earlier runs have read without a gap: taken from the top down to it, then skipped
        // in one jump (reprocessing reads everything again).
        let mark = if settings.reprocess_existing {
            None
        } else {
            let mut conn = inner.db.conn().await?;
            store::runs::scan_mark(&mut conn, row.platform_id).await?
        };
        let mut jumped = false;
        let mut top: Option<String> = None;
        let mut empty_pages = 0usize;
        let per_run = self.captioner().await.concurrency();
        let pausing = settings.processing_delay > 0.0;
        let mut ended: Option<String> = None;
        loop {
            // Start work while there is room: up to `per_run` images of this run at once.
            while ended.is_none() && answers.len() < per_run {
                if stop.is_set() {
                    return Err(Failure::Stopped);
                }
                if planned.scanned >= limit {
                    ended = Some(format!(
                        "Finished: reached {limit} posts with images to describe"
                    ));
                    break;
                }
                if planned.seen >= seen_cap {
                    ended = Some(format!("Finished: looked at {seen_cap} posts"));
                    break;
                }
                // With a pause between posts, one post at a time: the pause runs from the end of
                // the last post's work, as people expect "between posts" to mean.
                if pausing && !answers.is_empty() {
                    break;
                }
                let Some(status) = page.pop_front() else {
                    if timeline_done || read >= MAX_STATUSES_READ {
                        ended = Some("Finished: reached your oldest post".to_owned());
                        break;
                    }
                    if let Some(wait) = pause.take() {
                        if wait > LONGEST_RATE_WAIT {
                            return Err(Failure::Transient(
                                "the instance is rate limiting fedialt; the run goes on later"
                                    .into(),
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
                    let fetched = self
                        .instance_call(run, row, stop, || {
                            inner
                                .instances
                                .statuses(&instance, &token, &account.id, &cursor)
                        })
                        .await?;
                    pause = fetched.pause;
                    read += fetched.statuses.len();
                    let mut fresh: Vec<Status> = fetched
                        .statuses
                        .into_iter()
                        .filter(|s| last_taken.as_deref().is_none_or(|l| older(&s.id, l)))
                        .collect();
                    // Newest first, whatever order the page came in (pinned posts first, say).
                    fresh.sort_by(|a, b| {
                        if older(&a.id, &b.id) {
                            std::cmp::Ordering::Greater
                        } else if older(&b.id, &a.id) {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Equal
                        }
                    });
                    fresh.dedup_by(|a, b| a.id == b.id);
                    let link = fetched
                        .next
                        .filter(|link| statuses::same_origin(link, &instance))
                        .filter(|link| !matches!(&cursor, Cursor::Link(now) if now == link));
                    let Some(oldest) = fresh.last().map(|s| s.id.clone()) else {
                        // Nothing new here: the end of the timeline, unless the instance links
                        // on (a page can come back empty after its own filtering), a few times.
                        empty_pages += 1;
                        match link {
                            Some(link) if empty_pages <= MAX_EMPTY_PAGES => {
                                cursor = Cursor::Link(link);
                            }
                            _ => timeline_done = true,
                        }
                        continue;
                    };
                    empty_pages = 0;
                    cursor = match link {
                        Some(link) => Cursor::Link(link),
                        None => Cursor::OlderThan(oldest),
                    };
                    let media_ids: Vec<String> = fresh
                        .iter()
                        .flat_map(|s| s.media.iter().map(|m| m.id.clone()))
                        .collect();
                    existing = {
                        let mut conn = inner.db.conn().await?;
                        store::drafts::for_media(&mut conn, row.platform_id, &media_ids).await?
                    }
                    .into_iter()
                    .map(|d| (d.media_id.clone(), d))
                    .collect();
                    page = fresh.into();
                    continue;
                };
                if last_taken.as_deref().is_some_and(|l| !older(&status.id, l)) {
                    continue;
                }
                if let (Some((newest, oldest)), false) = (&mark, jumped) {
                    if !older(newest, &status.id) {
                        // At or below the newest post earlier runs read: everything down to
                        // their oldest is known; go on below it.
                        jumped = true;
                        if !older(&status.id, oldest) {
                            page.clear();
                            cursor = Cursor::OlderThan(oldest.clone());
                            last_taken = Some(oldest.clone());
                            continue;
                        }
                    }
                }
                top.get_or_insert_with(|| status.id.clone());
                last_taken = Some(status.id.clone());
                let mut plan = plan_post(&status, &existing, &settings, row.id);
                if let Plan::Work { wanted, .. } = &mut plan {
                    wanted.retain(|m| taken_media.insert(m.id.clone()));
                }
                match plan {
                    Plan::Covered => continue,
                    Plan::PassOver { skipped } => {
                        planned.seen += 1;
                        order.push_back(PostInFlight {
                            seq: next_seq,
                            id: status.id.clone(),
                            remaining: 0,
                            skipped,
                            with_work: false,
                        });
                        next_seq += 1;
                    }
                    Plan::Work { wanted, skipped } => {
                        if worked && settings.processing_delay > 0.0 {
                            stop.or_stop(tokio::time::sleep(Duration::from_secs_f64(
                                settings.processing_delay,
                            )))
                            .await?;
                        }
                        worked = true;
                        planned.seen += 1;
                        planned.scanned += 1;
                        self.step(
                            run,
                            format!("Describing images in post {} of {limit}", planned.scanned),
                        )
                        .await?;
                        let post = Arc::new(status);
                        let images = wanted.len();
                        for media in wanted {
                            answers.spawn(self.clone().answer(
                                next_seq,
                                post.clone(),
                                media,
                                settings.clone(),
                            ));
                        }
                        order.push_back(PostInFlight {
                            seq: next_seq,
                            id: post.id.clone(),
                            remaining: images,
                            skipped,
                            with_work: true,
                        });
                        next_seq += 1;
                    }
                }
                self.commit_finished(run, &mut order, &mut counts).await?;
            }
            self.commit_finished(run, &mut order, &mut counts).await?;
            if answers.is_empty() {
                if let Some(words) = ended {
                    self.extend_mark(row, &mark, jumped, top, last_taken)
                        .await?;
                    return Ok(words);
                }
                continue;
            }
            // The next answer, whichever image it is (a stop drops the calls in flight).
            let answer = match stop.or_stop(answers.join_next()).await? {
                Some(Ok(answer)) => answer,
                Some(Err(_)) => {
                    return Err(Failure::Transient(
                        "an image's task ended unexpectedly".into(),
                    ))
                }
                None => continue,
            };
            let (state, alt_text, error) = match answer.result {
                Ok(text) => (store::drafts::PENDING, text, None),
                Err(NotDescribed::Image(reason)) => (
                    store::drafts::GENERATION_FAILED,
                    String::new(),
                    Some(reason),
                ),
                Err(NotDescribed::ModelAway(reason)) => return Err(Failure::Transient(reason)),
            };
            let model = self.model().await;
            let now = store::now();
            let draft = NewDraft {
                run_id: Some(row.id),
                user_id: row.user_id,
                platform_id: row.platform_id,
                status_id: answer.post.id.clone(),
                status_url: answer.post.url.clone(),
                media_id: answer.media.id.clone(),
                preview_url: answer.media.preview_url.clone(),
                image_url: answer.media.url.clone(),
                post_text: answer.post.text.clone(),
                language: answer.post.language.clone(),
                alt_text,
                model: model.clone(),
                state: state.to_owned(),
                error,
                created_at: now,
                updated_at: now,
                prompt_version: crate::captioning::prompt::VERSION,
            };
            if inner
                .runs
                .record_draft(run, &inner.id, draft)
                .await?
                .is_none()
            {
                return Err(Failure::Stopped);
            }
            if let Some(post) = order.iter_mut().find(|p| p.seq == answer.seq) {
                post.remaining = post.remaining.saturating_sub(1);
            }
        }
    }

    /// After a run that read from the top without a gap: the span it covered, joined to the one
    /// before when it reached it. A resumed run (its top is not known) leaves the mark as it was.
    async fn extend_mark(
        &self,
        row: &RunRow,
        mark: &Option<(String, String)>,
        jumped: bool,
        top: Option<String>,
        bottom: Option<String>,
    ) -> Result<(), Failure> {
        // A run that found nothing new above the span starts at the span's own top.
        let top = top.or_else(|| mark.as_ref().filter(|_| jumped).map(|m| m.0.clone()));
        let (Some(top), Some(bottom), None) = (top, bottom, &row.resume_after) else {
            return Ok(());
        };
        let span = match mark {
            None => Some((top, bottom)),
            Some((newest, oldest)) if jumped => Some((
                if older(newest, &top) {
                    top
                } else {
                    newest.clone()
                },
                if older(&bottom, oldest) {
                    bottom
                } else {
                    oldest.clone()
                },
            )),
            // Stopped above what was read before: a gap remains; the next run closes it.
            Some(_) => None,
        };
        if let Some((newest, oldest)) = span {
            let mut conn = self.inner.db.conn().await?;
            store::runs::set_scan_mark(&mut conn, row.platform_id, &newest, &oldest).await?;
        }
        Ok(())
    }

    /// Commits the posts at the front whose images are all answered, in timeline order, so a
    /// resumed run goes on after the last post that is wholly done.
    async fn commit_finished(
        &self,
        run: RunId,
        order: &mut VecDeque<PostInFlight>,
        counts: &mut Counts,
    ) -> Result<(), Failure> {
        while order.front().is_some_and(|p| p.remaining == 0) {
            let Some(post) = order.pop_front() else {
                break;
            };
            self.advance(
                run,
                Progress {
                    posts_seen: 1,
                    posts_scanned: i32::from(post.with_work),
                    media_skipped: post.skipped,
                    resume_after: Some(post.id),
                    ..Progress::default()
                },
            )
            .await?;
            counts.seen += 1;
            counts.scanned += i32::from(post.with_work);
        }
        Ok(())
    }

    /// One image's answer (download and model call; no database work, so it may be dropped).
    async fn answer(
        self,
        seq: u64,
        post: Arc<Status>,
        media: Media,
        settings: CaptionSettings,
    ) -> Answer {
        let result = self.describe(&media, &post, &settings).await;
        Answer {
            seq,
            post,
            media,
            result,
        }
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

    /// Downloads the image and asks the model.
    async fn describe(
        &self,
        media: &Media,
        status: &Status,
        settings: &CaptionSettings,
    ) -> Result<String, NotDescribed> {
        self.describe_image(
            &media.url,
            settings,
            &status.text,
            status.language.as_deref(),
        )
        .await
    }

    /// One image described again, as a person asked on the review page: the same download,
    /// checks and model slots as a run's images. Err says why, in words for people.
    pub async fn describe_again(
        &self,
        image_url: &str,
        settings: &CaptionSettings,
        post_text: &str,
        language: Option<&str>,
    ) -> Result<String, String> {
        self.describe_image(image_url, settings, post_text, language)
            .await
            .map_err(|e| match e {
                NotDescribed::Image(reason) => reason,
                NotDescribed::ModelAway(reason) => {
                    format!("the model did not answer ({reason}); check CAPTION_BASE_URL")
                }
            })
    }

    /// The model's name, stored on each draft.
    pub async fn model(&self) -> String {
        self.captioner().await.model().to_owned()
    }

    pub(super) async fn describe_image(
        &self,
        url: &str,
        settings: &CaptionSettings,
        post_text: &str,
        language: Option<&str>,
    ) -> Result<String, NotDescribed> {
        let inner = &self.inner;
        // Images held in memory (downloaded, waiting for or in a model call) are bounded per
        // worker, whatever the posts hold.
        let _held = inner
            .images
            .acquire()
            .await
            .map_err(|_| NotDescribed::Image("the worker is stopping".to_owned()))?;
        let downloaded = inner
            .instances
            .download(url, inner.config.max_image_bytes)
            .await
            .map_err(|e| NotDescribed::Image(e.to_string()))?;
        let image =
            crate::captioning::images::prepare_blocking(downloaded, inner.config.max_image_pixels)
                .await
                .map_err(|e| NotDescribed::Image(e.to_string()))?;
        let _slot = self
            .slot()
            .await
            .ok_or_else(|| NotDescribed::Image("the worker is stopping".to_owned()))?;
        self.captioner()
            .await
            .describe(&image.jpeg, settings, post_text, language)
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
