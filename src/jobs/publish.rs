//! Publishing: a job per post sends that post's approved drafts in one edit (Mastodon) or one
//! call per image (Pixelfed), after fetching the post again. The re-fetch is what makes a retry
//! safe: an image that already carries our text went out before (the worker stopped between the
//! edit and the bookkeeping), so it is marked published without a second edit; one that carries
//! other text was described meanwhile and is left alone (already_described).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Worker;
use crate::crypto::{token_binding, ACCESS_TOKEN};
use crate::domain::{InstanceUrl, PlatformType};
use crate::platforms::publish::{Post, WriteError};
use crate::store::drafts::{self, DraftRow};
use crate::store::publish::PublishJob;
use crate::store::{self, StoreError};

/// Tries of a post whose instance keeps failing in passing ways (5xx, 429, no answer) before its
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

/// Connections that used up their rate limit, and until when (in this process).
#[derive(Default)]
pub(super) struct Pauses(std::sync::Mutex<HashMap<i64, Instant>>);

impl Pauses {
    fn until(&self, platform_id: i64) -> Option<Duration> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, until| *until > now);
        map.get(&platform_id).map(|until| *until - now)
    }

    fn pause_if(&self, platform_id: i64, wait: Option<Duration>) {
        let Some(wait) = wait else {
            return;
        };
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + wait;
        let entry = map.entry(platform_id).or_insert(until);
        *entry = (*entry).max(until);
    }
}

/// What became of one draft.
type Outcomes = Vec<(i64, &'static str, Option<String>)>;

impl Worker {
    pub(super) async fn publish(self, job: PublishJob) {
        let owner = self.inner.id.clone();
        let outcome = self.publish_post(&job).await;
        let recorded = async {
            let mut conn = self.inner.db.conn().await?;
            match outcome {
                Ok(()) => {
                    store::publish::finish(&mut conn, job.id, &owner, job.requested).await?;
                }
                Err(Stop::Later(after, reason)) if job.attempts < MAX_PUBLISH_ATTEMPTS => {
                    let backoff =
                        FIRST_BACKOFF_SECS * 2_i64.pow((job.attempts - 1).clamp(0, 10) as u32);
                    let wait = backoff.max(after.as_secs_f64().ceil() as i64);
                    store::publish::retry_later(
                        &mut conn,
                        job.id,
                        &owner,
                        store::now() + wait,
                        &reason,
                    )
                    .await?;
                }
                Err(Stop::Paused(wait)) => {
                    let wait = wait.as_secs_f64().ceil() as i64;
                    store::publish::pause(&mut conn, job.id, &owner, store::now() + wait.max(1))
                        .await?;
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
        }
        .await;
        if let Err(error) = recorded {
            tracing::warn!(job = job.id, error = %error, "could not record a publishing job's end");
        }
    }

    /// Keeps the job this worker's for another lease; Lost when it no longer is.
    async fn hold(&self, job: &PublishJob) -> Result<(), Stop> {
        let until = store::now_ms() + self.inner.config.lease.as_millis() as i64;
        let mut conn = self.inner.db.conn().await?;
        if store::publish::renew(&mut conn, job.id, &self.inner.id, until).await? {
            Ok(())
        } else {
            Err(Stop::Lost)
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
    async fn fail_all(&self, drafts: &[&DraftRow], error: &WriteError) -> Result<(), Stop> {
        let why = match error {
            WriteError::Gone => "the post no longer exists on the instance".to_owned(),
            WriteError::InvalidToken => "the instance refused fedialt's access: this connection \
                needs a new token. Connect the account again on Connected accounts, then retry."
                .to_owned(),
            WriteError::Refused(words) => format!("the instance refused the change: {words}"),
            WriteError::Later { reason, .. } => reason.clone(),
        };
        let outcomes: Outcomes = drafts
            .iter()
            .map(|d| (d.id, drafts::PUBLISH_FAILED, Some(why.clone())))
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
        match error {
            WriteError::Later { after, reason } => Err(Stop::Later(after, reason)),
            error => {
                if error == WriteError::InvalidToken {
                    self.mark_needs_reauth(job.user_id, job.platform_id).await;
                }
                self.fail_all(drafts, &error).await
            }
        }
    }

    /// Stops for later while the connection's rate limit is used up.
    fn paused(&self, platform_id: i64) -> Result<(), Stop> {
        match self.inner.pauses.until(platform_id) {
            Some(wait) => Err(Stop::Paused(wait)),
            None => Ok(()),
        }
    }

    async fn publish_post(&self, job: &PublishJob) -> Result<(), Stop> {
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
        let all: Vec<&DraftRow> = waiting.iter().collect();
        if platform.needs_reauth {
            return self.fail_all(&all, &WriteError::InvalidToken).await;
        }
        let token = match inner.secrets.open(
            &token_binding(ACCESS_TOKEN, platform.id, platform.user_id),
            &platform.access_token_enc,
        ) {
            Ok(token) => token,
            Err(_) => return self.fail_all(&all, &WriteError::InvalidToken).await,
        };
        let Ok(instance) = InstanceUrl::parse(&platform.instance_url, |_| true) else {
            return self
                .fail_all(
                    &all,
                    &WriteError::Refused("the instance address is not valid".into()),
                )
                .await;
        };
        let kind = PlatformType::parse(&platform.platform_type)
            .ok()
            .flatten()
            .unwrap_or(PlatformType::Mastodon);
        self.paused(platform.id)?;
        {
            let mut conn = inner.db.conn().await?;
            let ids: Vec<i64> = waiting.iter().map(|d| d.id).collect();
            drafts::mark_publishing(&mut conn, &ids).await?;
        }

        self.hold(job).await?;
        let post = match inner
            .instances
            .post(&instance, &token, &job.status_id)
            .await
        {
            Ok((post, pause)) => {
                self.inner.pauses.pause_if(platform.id, pause);
                post
            }
            Err(error) => return self.failed(job, &all, error).await,
        };
        let limit = usize::try_from(platform.description_limit.max(1)).unwrap_or(1500);
        let (outcomes, send) = sort(&post, &waiting, limit);
        self.settle(&outcomes).await?;
        if send.is_empty() {
            return Ok(());
        }
        match kind {
            PlatformType::Mastodon => {
                self.paused(platform.id)?;
                self.hold(job).await?;
                let source = match inner.instances.source(&instance, &token, &post.id).await {
                    Ok((source, pause)) => {
                        self.inner.pauses.pause_if(platform.id, pause);
                        source
                    }
                    Err(error) => return self.failed(job, &send, error).await,
                };
                self.paused(platform.id)?;
                self.hold(job).await?;
                let descriptions: HashMap<String, String> = send
                    .iter()
                    .map(|d| (d.media_id.clone(), d.alt_text.clone()))
                    .collect();
                match inner
                    .instances
                    .edit_post(&instance, &token, &post, &source, &descriptions)
                    .await
                {
                    Ok(pause) => {
                        self.inner.pauses.pause_if(platform.id, pause);
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
                    self.paused(platform.id)?;
                    self.hold(job).await?;
                    match inner
                        .instances
                        .describe_media(&instance, &token, &draft.media_id, &draft.alt_text)
                        .await
                    {
                        Ok(pause) => {
                            self.inner.pauses.pause_if(platform.id, pause);
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

/// Sorts a post's waiting drafts against the post as it is now: the ones to send, and the end of
/// the others (gone from the post, described meanwhile, already carrying our text, too long).
fn sort<'a>(post: &Post, waiting: &'a [DraftRow], limit: usize) -> (Outcomes, Vec<&'a DraftRow>) {
    let mut outcomes = Outcomes::new();
    let mut send = Vec::new();
    for draft in waiting {
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
                    Some("the image got a description on the instance meanwhile; it was left as it is".into()),
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
                    "the description has {length} characters, more than the instance's limit of {limit}"
                )),
            ));
        } else {
            send.push(draft);
        }
    }
    (outcomes, send)
}
