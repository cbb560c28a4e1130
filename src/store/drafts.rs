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
pub const GENERATION_FAILED: &str = "generation_failed";
/// States a run never replaces (with `edited`): a person's decision or the instance's copy.
pub const KEPT: [&str; 3] = ["approved", "publishing", "published"];

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
}

impl DraftRow {
    /// Whether a run may replace this draft (with reprocess_existing): never one a person edited,
    /// approved or that is published.
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
            run!(conn, |c| diesel::update(cd::table.find(old.id))
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
                ))
                .execute(c)
                .await)?;
            Ok(true)
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
