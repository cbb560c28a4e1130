//! Publishing: a job per post sends that post's approved drafts in one edit (Mastodon) or one
//! call per image (Pixelfed), after fetching the post again. The re-fetch is what makes a retry
//! safe: an image that already carries our text went out before (the worker stopped between the
//! edit and the bookkeeping), so it is marked published without a second edit; one that carries
//! other text was described meanwhile and is left alone (already_described).
//!
//! - What is sent is exactly what this job marked `publishing` (a conditional update): a draft
//!   rejected or edited a moment before is not among them.
//! - The lease is renewed in the background while the job works, and checked before each call:
//!   a job that lost it (the process stalled) makes no further call.
//! - The account's rate limit is read from every answer (X-RateLimit-Remaining and -Reset). A
//!   post starts only when its calls fit in what is left (three on Mastodon: the post, its
//!   source, the edit); otherwise the connection's jobs wait for the reset, in the database, so
//!   workers in other processes wait too. A 429 does the same.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Worker, CHECK_EVERY};
use crate::domain::PlatformType;
use crate::platforms::publish::{Budget, Post, WriteError};
use crate::store::drafts::{self, DraftRow};
use crate::store::publish::PublishJob;
use crate::store::{self, StoreError};

/// Tries of a post whose instance keeps failing in passing ways (5xx, no answer) before its
/// drafts are marked publish_failed (a person can retry them).
const MAX_PUBLISH_ATTEMPTS: i32 = 6;
/// The first retry's wait; doubled each try.
const FIRST_BACKOFF_SECS: i64 = 5;

enum Stop {
    /// Try the post again after this long.
    Later(Duration, String),
    /// The connection's rate limit is used up: go on after this long (not a failed try).
    Paused(Duration),
    /// The job is no longer this worker's, or the database failed: the lease runs out and the
    /// job is taken up again.
    Lost,
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Stop {
        tracing::warn!(error = %error, "publishing stopped on a database error");
        Stop::Lost
    }
}

/// What is left of each connection's rate limit, as its last answer said (in this process; the
/// database carries a pause to the others).
#[derive(Default)]
pub(super) struct Budgets(std::sync::Mutex<HashMap<i64, (i64, Instant)>>);

impl Budgets {
    fn note(&self, platform_id: i64, budget: Option<Budget>) {
        if let Some(b) = budget {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.insert(platform_id, (b.remaining, Instant::now() + b.reset_in));
        }
    }

    /// How long to wait before `calls` more calls fit; None when they fit now.
    fn wait(&self, platform_id: i64, calls: i64) -> Option<Duration> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let (remaining, reset) = *map.get(&platform_id)?;
        if reset <= now {
            map.remove(&platform_id);
            return None;
        }
        (remaining < calls).then(|| reset - now)
    }
}

/// The job's hold: lost when a renewal failed; good until `until_ms`.
struct Lease {
    lost: AtomicBool,
    until_ms: AtomicI64,
}

/// What became of one draft.
type Outcomes = Vec<(i64, &'static str, Option<String>)>;

impl Worker {
    pub(super) async fn publish(self, job: PublishJob) {
        let owner = self.inner.id.clone();
        let lease = Arc::new(Lease {
            lost: AtomicBool::new(false),
            until_ms: AtomicI64::new(job.lease_until_ms.unwrap_or(0)),
        });
        let (done_tx, done_rx) = watch::channel(false);
        let keeper = tokio::spawn(
            self.clone()
                .keep_publish_lease(job.id, lease.clone(), done_rx),
        );
        let outcome = self.publish_post(&job, &lease).await;
        let _ = done_tx.send(true);
        let _ = keeper.await;
        let recorded = async {
            let mut conn = self.inner.db.conn().await?;
            // One transaction: the job's end and its drafts' states change together (a page
            // never sees the job waiting while its drafts still say publishing).
            crate::write_tx!(conn, {
                match outcome {
                    Ok(()) => {
                        store::publish::finish(&mut conn, job.id, &owner, job.requested).await?;
                    }
                    Err(Stop::Paused(wait)) => {
                        let until = store::now() + (wait.as_secs_f64().ceil() as i64).max(1);
                        if store::publish::pause(&mut conn, job.id, &owner, until).await? {
                            drafts::unmark_publishing(&mut conn, job.platform_id, &job.status_id)
                                .await?;
                        }
                        store::publish::pause_connection(&mut conn, job.platform_id, until).await?;
                    }
                    Err(Stop::Later(after, reason)) if job.attempts < MAX_PUBLISH_ATTEMPTS => {
                        let backoff =
                            FIRST_BACKOFF_SECS * 2_i64.pow((job.attempts - 1).clamp(0, 10) as u32);
                        let wait = backoff.max(after.as_secs_f64().ceil() as i64);
                        if store::publish::retry_later(
                            &mut conn,
                            job.id,
                            &owner,
                            store::now() + wait,
                            &reason,
                        )
                        .await?
                        {
                            drafts::unmark_publishing(&mut conn, job.platform_id, &job.status_id)
                                .await?;
                        }
                    }
                    Err(Stop::Later(_, reason)) => {
                        let why = format!(
                        "fedialt tried {MAX_PUBLISH_ATTEMPTS} times and gave up for now: {reason}"
                    );
                        for draft in
                            drafts::to_publish(&mut conn, job.platform_id, &job.status_id).await?
                        {
                            drafts::settle(&mut conn, draft.id, drafts::PUBLISH_FAILED, Some(&why))
                                .await?;
                        }
                        store::publish::finish(&mut conn, job.id, &owner, job.requested).await?;
                    }
                    Err(Stop::Lost) => {}
                }
                Ok::<(), StoreError>(())
            })
        }
        .await;
        if let Err(error) = recorded {
            tracing::warn!(job = job.id, error = %error, "could not record a publishing job's end");
        }
    }

    /// Renews the job's lease every third of it until `done`; sets `lost` when it is gone. The
    /// renewal itself is never cut short (a database statement is not dropped halfway).
    async fn keep_publish_lease(self, id: i64, lease: Arc<Lease>, mut done: watch::Receiver<bool>) {
        let every = self.inner.config.lease / 3;
        let mut last = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = done.changed() => return,
            }
            if last.elapsed() < every {
                continue;
            }
            last = tokio::time::Instant::now();
            let until = store::now_ms() + self.inner.config.lease.as_millis() as i64;
            let renewed = async {
                let mut conn = self.inner.db.conn().await?;
                store::publish::renew(&mut conn, id, &self.inner.id, until).await
            }
            .await;
            if !matches!(renewed, Ok(true)) {
                lease.lost.store(true, Ordering::SeqCst);
                return;
            }
            lease.until_ms.store(until, Ordering::SeqCst);
        }
    }

    async fn settle(&self, outcomes: &Outcomes) -> Result<(), Stop> {
        let mut conn = self.inner.db.conn().await?;
        for (id, state, error) in outcomes {
            drafts::settle(&mut conn, *id, state, error.as_deref()).await?;
        }
        Ok(())
    }

    /// A failure that ends these drafts' publishing (a person can retry them).
    async fn fail_all(&self, drafts: &[&DraftRow], why: &str) -> Result<(), Stop> {
        let outcomes: Outcomes = drafts
            .iter()
            .map(|d| (d.id, drafts::PUBLISH_FAILED, Some(why.to_owned())))
            .collect();
        self.settle(&outcomes).await
    }

    /// An instance call's failure: a passing one stops for later, a lasting one fails the drafts.
    async fn failed(
        &self,
        job: &PublishJob,
        drafts: &[&DraftRow],
        error: WriteError,
    ) -> Result<(), Stop> {
        let why = match error {
            WriteError::Later { after, reason } => return Err(Stop::Later(after, reason)),
            WriteError::RateLimited { after } => {
                self.inner.budgets.note(
                    job.platform_id,
                    Some(Budget {
                        remaining: 0,
                        reset_in: after,
                    }),
                );
                return Err(Stop::Paused(after));
            }
            WriteError::Gone => "the post no longer exists on the instance".to_owned(),
            WriteError::InvalidToken => {
                self.mark_needs_reauth(job.user_id, job.platform_id).await;
                NEEDS_TOKEN.to_owned()
            }
            WriteError::Refused(words) => format!("the instance refused the change: {words}"),
        };
        self.fail_all(drafts, &why).await
    }

    /// Before a call: the job must still be this worker's (its lease renewed, with a quarter of
    /// it to spare: a renewal stuck waiting for the database counts as lost), and `calls` must fit in
    /// what is left of the rate limit.
    fn ready(&self, platform_id: i64, lease: &Lease, calls: i64) -> Result<(), Stop> {
        let margin = self.inner.config.lease.as_millis() as i64 / 4;
        if lease.lost.load(Ordering::SeqCst)
            || store::now_ms() + margin >= lease.until_ms.load(Ordering::SeqCst)
        {
            return Err(Stop::Lost);
        }
        match self.inner.budgets.wait(platform_id, calls) {
            Some(wait) => Err(Stop::Paused(wait)),
            None => Ok(()),
        }
    }

    async fn publish_post(&self, job: &PublishJob, lost: &Lease) -> Result<(), Stop> {
        let inner = &self.inner;
        let (platform, waiting) = {
            let mut conn = inner.db.conn().await?;
            let platform = store::platforms::owned(&mut conn, job.platform_id, job.user_id).await?;
            let waiting = drafts::to_publish(&mut conn, job.platform_id, &job.status_id).await?;
            (platform, waiting)
        };
        // A removed connection took its drafts with it.
        let Some(platform) = platform else {
            return Ok(());
        };
        if waiting.is_empty() {
            return Ok(());
        }
        let kind = PlatformType::parse(&platform.platform_type)
            .ok()
            .flatten()
            .unwrap_or(PlatformType::Mastodon);
        let calls_needed = match kind {
            PlatformType::Mastodon => 3,
            PlatformType::Pixelfed => 1 + waiting.len() as i64,
        };
        self.ready(platform.id, lost, calls_needed)?;
        // What goes out is what this marks, with the text as it is at this moment.
        let marked = {
            let mut conn = inner.db.conn().await?;
            let ids: Vec<i64> = waiting.iter().map(|d| d.id).collect();
            drafts::mark_publishing(&mut conn, &ids).await?
        };
        if marked.is_empty() {
            return Ok(());
        }
        let all: Vec<&DraftRow> = marked.iter().collect();
        if platform.needs_reauth {
            return self.fail_all(&all, NEEDS_TOKEN).await;
        }
        let (instance, token) =
            match crate::platforms::connect::credentials(&inner.secrets, &platform) {
                Ok(both) => both,
                Err(why @ crate::platforms::connect::Unusable::Token) => {
                    return self
                        .fail_all(&all, &format!("{}, then retry", why.words()))
                        .await
                }
                Err(why) => return self.fail_all(&all, why.words()).await,
            };

        let post = match inner
            .instances
            .post(&instance, &token, &job.status_id)
            .await
        {
            Ok((post, budget)) => {
                inner.budgets.note(platform.id, budget);
                post
            }
            Err(error) => return self.failed(job, &all, error).await,
        };
        let limit = usize::try_from(platform.description_limit.max(1)).unwrap_or(1500);
        let (outcomes, send) = sort(&post, &marked, limit);
        self.settle(&outcomes).await?;
        if send.is_empty() {
            return Ok(());
        }
        match kind {
            PlatformType::Mastodon => {
                self.ready(platform.id, lost, 2)?;
                let source = match inner.instances.source(&instance, &token, &post.id).await {
                    Ok((source, budget)) => {
                        inner.budgets.note(platform.id, budget);
                        source
                    }
                    Err(error) => return self.failed(job, &send, error).await,
                };
                self.ready(platform.id, lost, 1)?;
                let descriptions: HashMap<String, String> = send
                    .iter()
                    .map(|d| (d.media_id.clone(), d.alt_text.clone()))
                    .collect();
                match inner
                    .instances
                    .edit_post(&instance, &token, &post, &source, &descriptions)
                    .await
                {
                    Ok(budget) => {
                        inner.budgets.note(platform.id, budget);
                        let done: Outcomes = send
                            .iter()
                            .map(|d| (d.id, drafts::PUBLISHED, None))
                            .collect();
                        self.settle(&done).await
                    }
                    Err(error) => self.failed(job, &send, error).await,
                }
            }
            PlatformType::Pixelfed => {
                for draft in send {
                    self.ready(platform.id, lost, 1)?;
                    match inner
                        .instances
                        .describe_media(&instance, &token, &draft.media_id, &draft.alt_text)
                        .await
                    {
                        Ok(budget) => {
                            inner.budgets.note(platform.id, budget);
                            self.settle(&vec![(draft.id, drafts::PUBLISHED, None)])
                                .await?;
                        }
                        Err(WriteError::Gone) => {
                            self.settle(&vec![(
                                draft.id,
                                drafts::PUBLISH_FAILED,
                                Some("the image no longer exists on the instance".into()),
                            )])
                            .await?;
                        }
                        Err(error) => self.failed(job, &[draft], error).await?,
                    }
                }
                Ok(())
            }
        }
    }
}

const NEEDS_TOKEN: &str = "the instance refused fedialt's access: this connection needs a new \
    token. Connect the account again on Connected accounts, then retry.";

/// Sorts a post's drafts against the post as it is now: the ones to send, and the end of the
/// others (gone from the post, described meanwhile, already carrying our text, too long).
fn sort<'a>(post: &Post, marked: &'a [DraftRow], limit: usize) -> (Outcomes, Vec<&'a DraftRow>) {
    let mut outcomes = Outcomes::new();
    let mut send = Vec::new();
    for draft in marked {
        let Some(media) = post.media.iter().find(|m| m.id == draft.media_id) else {
            outcomes.push((
                draft.id,
                drafts::PUBLISH_FAILED,
                Some("the image is no longer on the post".into()),
            ));
            continue;
        };
        if media.described() {
            let same = media.description.as_deref().map(str::trim) == Some(draft.alt_text.trim());
            outcomes.push(if same {
                // It went out before; only the bookkeeping was missing.
                (draft.id, drafts::PUBLISHED, None)
            } else {
                (
                    draft.id,
                    drafts::ALREADY_DESCRIBED,
                    Some(
                        "the image got a description on the instance meanwhile; it was left as \
                         it is"
                            .into(),
                    ),
                )
            });
            continue;
        }
        let length = draft.alt_text.chars().count();
        if draft.alt_text.trim().is_empty() {
            outcomes.push((
                draft.id,
                drafts::PUBLISH_FAILED,
                Some("the description is empty".into()),
            ));
        } else if length > limit {
            outcomes.push((
                draft.id,
                drafts::PUBLISH_FAILED,
                Some(format!(
                    "the description has {length} characters, more than the instance's limit of \
                     {limit}"
                )),
            ));
        } else {
            send.push(draft);
        }
    }
    (outcomes, send)
}
