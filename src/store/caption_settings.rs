//! Saved caption settings, one row per platform connection; the row's version orders the cached
//! copies (0 is "no saved settings").

use diesel::prelude::{
    ExpressionMethods, OptionalExtension, QueryDsl, Queryable, Selectable, SelectableHelper,
};
use diesel_async::RunQueryDsl;

use super::schema::caption_settings as cs;
use super::{Conn, StoreError};
use crate::domain::CaptionSettings;
use crate::run;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cs)]
pub struct SettingsRow {
    pub platform_id: i64,
    pub user_id: i64,
    pub max_posts_per_run: i32,
    pub max_caption_length: i32,
    pub optimal_min_length: i32,
    pub optimal_max_length: i32,
    pub reprocess_existing: bool,
    pub processing_delay_ms: i32,
    pub version: i64,
    pub updated_at: i64,
}

impl SettingsRow {
    pub fn settings(&self) -> CaptionSettings {
        CaptionSettings {
            max_posts_per_run: self.max_posts_per_run.max(0) as u32,
            max_caption_length: self.max_caption_length.max(0) as u32,
            optimal_min_length: self.optimal_min_length.max(0) as u32,
            optimal_max_length: self.optimal_max_length.max(0) as u32,
            reprocess_existing: self.reprocess_existing,
            processing_delay: f64::from(self.processing_delay_ms) / 1000.0,
        }
    }
}

pub async fn get(conn: &mut Conn, platform_id: i64) -> Result<Option<SettingsRow>, StoreError> {
    Ok(run!(conn, |c| cs::table
        .find(platform_id)
        .select(SettingsRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Inserts or replaces; returns the new version.
pub async fn save(
    conn: &mut Conn,
    platform_id: i64,
    user_id: i64,
    s: &CaptionSettings,
    now: i64,
) -> Result<i64, StoreError> {
    let values = (
        cs::max_posts_per_run.eq(s.max_posts_per_run as i32),
        cs::max_caption_length.eq(s.max_caption_length as i32),
        cs::optimal_min_length.eq(s.optimal_min_length as i32),
        cs::optimal_max_length.eq(s.optimal_max_length as i32),
        cs::reprocess_existing.eq(s.reprocess_existing),
        cs::processing_delay_ms.eq(s.delay_ms()),
        cs::updated_at.eq(now),
    );
    Ok(run!(conn, |c| diesel::insert_into(cs::table)
        .values((
            cs::platform_id.eq(platform_id),
            cs::user_id.eq(user_id),
            values,
            cs::version.eq(1i64),
        ))
        .on_conflict(cs::platform_id)
        .do_update()
        .set((values, cs::version.eq(cs::version + 1)))
        .returning(cs::version)
        .get_result::<i64>(c)
        .await)?)
}
