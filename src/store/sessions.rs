//! The sessions table: the durable copy of every session. `id` is the SHA-256 of the session key.

use diesel::prelude::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, Selectable,
    SelectableHelper,
};
use diesel_async::RunQueryDsl;

use super::schema::sessions;
use super::{Conn, StoreError};
use crate::run;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: String,
    pub user_id: Option<i64>,
    pub state: String,
    pub version: i64,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
}

pub async fn insert(conn: &mut Conn, row: &SessionRow) -> Result<(), StoreError> {
    run!(conn, |c| diesel::insert_into(sessions::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// The live session with this id, if it has not expired.
pub async fn live(conn: &mut Conn, id: &str, now: i64) -> Result<Option<SessionRow>, StoreError> {
    Ok(run!(conn, |c| sessions::table
        .find(id)
        .filter(sessions::expires_at.gt(now))
        .select(SessionRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Replaces the state; returns the new version, or None when the row is gone.
pub async fn update_state(
    conn: &mut Conn,
    id: &str,
    user_id: Option<i64>,
    state: &str,
    now: i64,
    expires_at: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(run!(conn, |c| diesel::update(sessions::table.find(id))
        .set((
            sessions::state.eq(state),
            sessions::user_id.eq(user_id),
            sessions::version.eq(sessions::version + 1),
            sessions::last_seen_at.eq(now),
            sessions::expires_at.eq(expires_at),
        ))
        .returning(sessions::version)
        .get_result::<i64>(c)
        .await
        .optional())?)
}

pub async fn delete(conn: &mut Conn, id: &str) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::delete(sessions::table.find(id))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// A person's live sessions, newest first.
pub async fn for_user(
    conn: &mut Conn,
    user_id: i64,
    now: i64,
) -> Result<Vec<SessionRow>, StoreError> {
    Ok(run!(conn, |c| sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(now))
        .order(sessions::last_seen_at.desc())
        .select(SessionRow::as_select())
        .load(c)
        .await)?)
}

/// Ids of a person's sessions other than `keep` (all of them when `keep` is None).
pub async fn ids_for_user_except(
    conn: &mut Conn,
    user_id: i64,
    keep: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let keep = keep.unwrap_or("");
    Ok(run!(conn, |c| sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::id.ne(keep))
        .select(sessions::id)
        .load::<String>(c)
        .await)?)
}

pub async fn delete_expired(conn: &mut Conn, now: i64) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::delete(
        sessions::table.filter(sessions::expires_at.le(now))
    )
    .execute(c)
    .await)?)
}
