//! Drafted descriptions: one row per image of a connection (unique on platform and media id), so a
//! resumed or repeated run can never make a second draft of an image.

use diesel::prelude::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, Selectable,
    SelectableHelper,
};
use diesel_async::RunQueryDsl;

use super::schema::caption_drafts as cd;
use super::{now, Conn, StoreError};
use crate::run;

pub const PENDING: &str = "pending";
pub const APPROVED: &str = "approved";
pub const PUBLISHING: &str = "publishing";
pub const PUBLISHED: &str = "published";
pub const REJECTED: &str = "rejected";
pub const GENERATION_FAILED: &str = "generation_failed";
pub const PUBLISH_FAILED: &str = "publish_failed";
pub const ALREADY_DESCRIBED: &str = "already_described";
/// Every state, in the order the review page offers them.
pub const STATES: [&str; 8] = [
    PENDING,
    APPROVED,
    PUBLISHING,
    PUBLISHED,
    PUBLISH_FAILED,
    REJECTED,
    GENERATION_FAILED,
    ALREADY_DESCRIBED,
];
/// States a run never replaces (with `edited`): a person's decision (approved, or rejected:
/// Regenerate redraws one on request) or the instance's copy.
pub const KEPT: [&str; 4] = [APPROVED, PUBLISHING, PUBLISHED, REJECTED];

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = cd)]
pub struct DraftRow {
    pub id: i64,
    pub run_id: Option<i64>,
    pub user_id: i64,
    pub platform_id: i64,
    pub status_id: String,
    pub status_url: String,
    pub media_id: String,
    pub preview_url: String,
    pub image_url: String,
    pub post_text: String,
    pub language: Option<String>,
    pub alt_text: String,
    pub model: String,
    pub state: String,
    pub edited: bool,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub prompt_version: i32,
    pub version: i64,
    pub published_at: Option<i64>,
    /// Approved by fedialt (the connection publishes without review), not by a person.
    pub auto_published: bool,
}

impl DraftRow {
    /// Whether a run may replace this draft (with reprocess_existing): never one a person edited,
    /// approved, rejected or that is published.
    pub fn replaceable(&self) -> bool {
        !self.edited && !KEPT.contains(&self.state.as_str())
    }
}

#[derive(Insertable, Clone, Debug)]
#[diesel(table_name = cd)]
pub struct NewDraft {
    pub run_id: Option<i64>,
    pub user_id: i64,
    pub platform_id: i64,
    pub status_id: String,
    pub status_url: String,
    pub media_id: String,
    pub preview_url: String,
    pub image_url: String,
    pub post_text: String,
    pub language: Option<String>,
    pub alt_text: String,
    pub model: String,
    pub state: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub prompt_version: i32,
}

/// The connection's drafts of these images.
pub async fn for_media(
    conn: &mut Conn,
    platform_id: i64,
    media_ids: &[String],
) -> Result<Vec<DraftRow>, StoreError> {
    if media_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(run!(conn, |c| cd::table
        .filter(cd::platform_id.eq(platform_id))
        .filter(cd::media_id.eq_any(media_ids))
        .select(DraftRow::as_select())
        .load(c)
        .await)?)
}

/// Writes a run's draft of an image: a new row, or (reprocessing) the existing row replaced when
/// nobody edited or decided on it. False when an existing draft was kept.
pub async fn put(conn: &mut Conn, new: &NewDraft) -> Result<bool, StoreError> {
    let existing = run!(conn, |c| cd::table
        .filter(cd::platform_id.eq(new.platform_id))
        .filter(cd::media_id.eq(&new.media_id))
        .select(DraftRow::as_select())
        .first(c)
        .await
        .optional())?;
    match existing {
        None => {
            run!(conn, |c| diesel::insert_into(cd::table)
                .values(new)
                .execute(c)
                .await)?;
            Ok(true)
        }
        Some(old) if old.replaceable() => {
            // Conditional, so a person's edit or approval made since the read above wins.
            let n = run!(conn, |c| diesel::update(cd::table.find(old.id))
                .filter(cd::edited.eq(false))
                .filter(cd::state.ne_all(KEPT))
                .set((
                    cd::run_id.eq(new.run_id),
                    cd::status_url.eq(&new.status_url),
                    cd::preview_url.eq(&new.preview_url),
                    cd::image_url.eq(&new.image_url),
                    cd::post_text.eq(&new.post_text),
                    cd::language.eq(&new.language),
                    cd::alt_text.eq(&new.alt_text),
                    cd::model.eq(&new.model),
                    cd::prompt_version.eq(new.prompt_version),
                    cd::state.eq(&new.state),
                    cd::error.eq(&new.error),
                    cd::updated_at.eq(now()),
                    cd::version.eq(cd::version + 1),
                ))
                .execute(c)
                .await)?;
            Ok(n == 1)
        }
        Some(_) => Ok(false),
    }
}

/// A run's drafts, in the order they were made.
pub async fn for_run(conn: &mut Conn, run_id: i64) -> Result<Vec<DraftRow>, StoreError> {
    Ok(run!(conn, |c| cd::table
        .filter(cd::run_id.eq(run_id))
        .order(cd::id.asc())
        .select(DraftRow::as_select())
        .load(c)
        .await)?)
}

/// The draft, only if it is that person's.
pub async fn owned(conn: &mut Conn, id: i64, user_id: i64) -> Result<Option<DraftRow>, StoreError> {
    Ok(run!(conn, |c| cd::table
        .find(id)
        .filter(cd::user_id.eq(user_id))
        .select(DraftRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Those of the drafts that are that person's.
pub async fn owned_many(
    conn: &mut Conn,
    ids: &[i64],
    user_id: i64,
) -> Result<Vec<DraftRow>, StoreError> {
    Ok(run!(conn, |c| cd::table
        .filter(cd::id.eq_any(ids))
        .filter(cd::user_id.eq(user_id))
        .select(DraftRow::as_select())
        .load(c)
        .await)?)
}

/// A page of a connection's drafts in one state (or all), newest first.
pub async fn page(
    conn: &mut Conn,
    platform_id: i64,
    state: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<DraftRow>, StoreError> {
    // Newest post first (instances' ids are numbers of growing length), its images in order.
    macro_rules! query {
        () => {
            cd::table
                .filter(cd::platform_id.eq(platform_id))
                .order(diesel::dsl::sql::<diesel::sql_types::BigInt>(
                    "length(status_id) DESC, status_id DESC, id ASC",
                ))
                .limit(limit)
                .offset(offset)
                .select(DraftRow::as_select())
        };
    }
    Ok(match state {
        Some(state) => run!(conn, |c| query!().filter(cd::state.eq(state)).load(c).await)?,
        None => run!(conn, |c| query!().load(c).await)?,
    })
}

/// How many drafts of a connection are in each state.
pub async fn counts(conn: &mut Conn, platform_id: i64) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(run!(conn, |c| cd::table
        .filter(cd::platform_id.eq(platform_id))
        .group_by(cd::state)
        .select((cd::state, diesel::dsl::count_star()))
        .load(c)
        .await)?)
}

/// A person's change to a draft, made only while it is in one of `from` (and, when given, still
/// at `version`): the new state, and the text when it changes.
pub struct Change<'a> {
    pub from: &'a [&'a str],
    pub version: Option<i64>,
    pub state: &'a str,
    pub alt_text: Option<&'a str>,
    pub edited: Option<bool>,
    pub model: Option<(&'a str, i32)>,
}

/// Applies `change`; None when the draft was not in a state it applies to (or had changed).
pub async fn change(
    conn: &mut Conn,
    id: i64,
    user_id: i64,
    change: &Change<'_>,
) -> Result<Option<DraftRow>, StoreError> {
    let target = cd::table
        .find(id)
        .filter(cd::user_id.eq(user_id))
        .filter(cd::state.eq_any(change.from));
    // The assignments, built afresh for each branch (they are moved into the statement).
    macro_rules! set {
        () => {
            (
                (
                    cd::state.eq(change.state),
                    cd::error.eq(None::<String>),
                    cd::updated_at.eq(now()),
                    cd::version.eq(cd::version + 1),
                    // A person's decision from now on.
                    cd::auto_published.eq(false),
                ),
                change.alt_text.map(|t| cd::alt_text.eq(t)),
                change.edited.map(|e| cd::edited.eq(e)),
                change.model.map(|(m, _)| cd::model.eq(m)),
                change.model.map(|(_, v)| cd::prompt_version.eq(v)),
            )
        };
    }
    Ok(match change.version {
        Some(version) => run!(conn, |c| diesel::update(
            target.filter(cd::version.eq(version))
        )
        .set(set!())
        .returning(DraftRow::as_returning())
        .get_result(c)
        .await
        .optional())?,
        None => run!(conn, |c| diesel::update(target)
            .set(set!())
            .returning(DraftRow::as_returning())
            .get_result(c)
            .await
            .optional())?,
    })
}

/// The drafts of one post waiting to go out (approved, or caught halfway by a worker that stopped).
pub async fn to_publish(
    conn: &mut Conn,
    platform_id: i64,
    status_id: &str,
) -> Result<Vec<DraftRow>, StoreError> {
    Ok(run!(conn, |c| cd::table
        .filter(cd::platform_id.eq(platform_id))
        .filter(cd::status_id.eq(status_id))
        .filter(cd::state.eq_any([APPROVED, PUBLISHING]))
        .order(cd::id.asc())
        .select(DraftRow::as_select())
        .load(c)
        .await)?)
}

/// Marks approved drafts as going out; the ones it marked, as they are now.
pub async fn mark_publishing(conn: &mut Conn, ids: &[i64]) -> Result<Vec<DraftRow>, StoreError> {
    Ok(run!(conn, |c| diesel::update(
        cd::table
            .filter(cd::id.eq_any(ids))
            .filter(cd::state.eq_any([APPROVED, PUBLISHING]))
    )
    .set((
        cd::state.eq(PUBLISHING),
        cd::updated_at.eq(now()),
        cd::version.eq(cd::version + 1),
    ))
    .returning(DraftRow::as_returning())
    .get_results(c)
    .await)?)
}

/// A post's drafts that were going out when its job stopped for later (a rate limit, a passing
/// failure) are approved again, so a person can still withdraw them while the job waits.
pub async fn unmark_publishing(
    conn: &mut Conn,
    platform_id: i64,
    status_id: &str,
) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::update(
        cd::table
            .filter(cd::platform_id.eq(platform_id))
            .filter(cd::status_id.eq(status_id))
            .filter(cd::state.eq(PUBLISHING))
    )
    .set((
        cd::state.eq(APPROVED),
        cd::updated_at.eq(now()),
        cd::version.eq(cd::version + 1),
    ))
    .execute(c)
    .await)?)
}

/// The end of publishing one draft: published (with the text that went out), already_described
/// or publish_failed with why. Only a draft still publishing is changed.
pub async fn settle(
    conn: &mut Conn,
    id: i64,
    state: &str,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let now = now();
    let published_at = (state == PUBLISHED).then_some(now);
    let n = run!(conn, |c| diesel::update(
        cd::table.find(id).filter(cd::state.eq(PUBLISHING))
    )
    .set((
        cd::state.eq(state),
        cd::error.eq(error),
        cd::published_at.eq(published_at),
        cd::updated_at.eq(now),
        cd::version.eq(cd::version + 1),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// A person's published drafts, newest first.
pub async fn published(
    conn: &mut Conn,
    user_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<DraftRow>, StoreError> {
    Ok(run!(conn, |c| cd::table
        .filter(cd::user_id.eq(user_id))
        .filter(cd::state.eq(PUBLISHED))
        .order((cd::published_at.desc(), cd::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(DraftRow::as_select())
        .load(c)
        .await)?)
}

/// Drafts in one state, across everyone (the admin overview).
pub async fn count_in_state(conn: &mut Conn, state: &str) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| cd::table
        .filter(cd::state.eq(state))
        .count()
        .get_result(c)
        .await)?)
}

/// A post deleted on the instance: its drafts nobody decided on (pending, or failed to draft)
/// go; a person's decisions stay (their history).
pub async fn drop_undecided_of_post(
    conn: &mut Conn,
    platform_id: i64,
    status_id: &str,
) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::delete(
        cd::table
            .filter(cd::platform_id.eq(platform_id))
            .filter(cd::status_id.eq(status_id))
            .filter(cd::state.eq_any([PENDING, GENERATION_FAILED]))
            .filter(cd::edited.eq(false))
    )
    .execute(c)
    .await)?)
}

/// Approves drafts as they were made, for a connection that publishes without review: only
/// those still pending and unedited (a person's change since wins). Returns how many.
pub async fn approve_unreviewed(conn: &mut Conn, ids: &[i64]) -> Result<usize, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(run!(conn, |c| diesel::update(
        cd::table
            .filter(cd::id.eq_any(ids))
            .filter(cd::state.eq(PENDING))
            .filter(cd::edited.eq(false))
    )
    .set((
        cd::state.eq(APPROVED),
        cd::auto_published.eq(true),
        cd::updated_at.eq(now()),
        cd::version.eq(cd::version + 1),
    ))
    .execute(c)
    .await)?)
}

/// How many of a person's drafts wait for review (the navigation's count).
pub async fn waiting_for(conn: &mut Conn, user_id: i64) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| cd::table
        .filter(cd::user_id.eq(user_id))
        .filter(cd::state.eq(PENDING))
        .count()
        .get_result(c)
        .await)?)
}
