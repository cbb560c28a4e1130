//! System-wide settings admins save: one row per name, its value as JSON, versioned.

use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::schema::admin_settings as a;
use super::{now, Conn, StoreError};
use crate::run;

pub const CAPTION_DEFAULTS: &str = "caption_defaults";

/// The value and its version, if it was ever saved.
pub async fn get(conn: &mut Conn, name: &str) -> Result<Option<(String, i64)>, StoreError> {
    Ok(run!(conn, |c| a::table
        .find(name)
        .select((a::value, a::version))
        .first::<(String, i64)>(c)
        .await
        .optional())?)
}

/// Saves a value; its new version.
pub async fn put(conn: &mut Conn, name: &str, value: &str) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| diesel::insert_into(a::table)
        .values((
            a::name.eq(name),
            a::value.eq(value),
            a::version.eq(1_i64),
            a::updated_at.eq(now()),
        ))
        .on_conflict(a::name)
        .do_update()
        .set((
            a::value.eq(excluded(a::value)),
            a::version.eq(a::version + 1),
            a::updated_at.eq(excluded(a::updated_at)),
        ))
        .returning(a::version)
        .get_result::<i64>(c)
        .await)?)
}
