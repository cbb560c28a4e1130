//! The sessions table: the durable copy of every session. `id` is the SHA-256 of the session key.

use diesel::prelude::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, Selectable,
    SelectableHelper,
};
use diesel::sql_types::BigInt;
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
    pub signed_in_from: Option<String>,
}

pub async fn insert(conn: &mut Conn, row: &SessionRow) -> Result<(), StoreError> {
    run!(conn, |c| diesel::insert_into(sessions::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// The expiry a write gives a live session: `idle` from now, but never past `max` from sign-in.
fn sliding_expiry(now: i64, limits: Lifetime) -> diesel::expression::SqlLiteral<BigInt> {
    let idle_end = now + limits.idle;
    diesel::dsl::sql::<BigInt>(&format!(
        "CASE WHEN created_at + {max} < {idle_end} THEN created_at + {max} ELSE {idle_end} END",
        max = limits.max
    ))
}

/// A session's two limits, in seconds: the sliding idle timeout and the absolute lifetime.
#[derive(Clone, Copy, Debug)]
pub struct Lifetime {
    pub idle: i64,
    pub max: i64,
}

/// The live session with this id: not expired, and not past its absolute lifetime.
pub async fn live(
    conn: &mut Conn,
    id: &str,
    now: i64,
    limits: Lifetime,
) -> Result<Option<SessionRow>, StoreError> {
    Ok(run!(conn, |c| sessions::table
        .find(id)
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::created_at.gt(now - limits.max))
        .select(SessionRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// What a write to a live session left in the row.
#[derive(Debug, Clone, Queryable)]
pub struct Written {
    pub version: i64,
    pub expires_at: i64,
    pub state: String,
}

/// Replaces the state of a live session (and slides its expiry); None when the row is gone,
/// expired or past its lifetime. An ended session is never written again.
pub async fn update_state(
    conn: &mut Conn,
    id: &str,
    user_id: Option<i64>,
    state: &str,
    now: i64,
    limits: Lifetime,
) -> Result<Option<Written>, StoreError> {
    Ok(run!(conn, |c| diesel::update(
        sessions::table
            .find(id)
            .filter(sessions::expires_at.gt(now))
            .filter(sessions::created_at.gt(now - limits.max))
    )
    .set((
        sessions::state.eq(state),
        sessions::user_id.eq(user_id),
        sessions::version.eq(sessions::version + 1),
        sessions::last_seen_at.eq(now),
        sessions::expires_at.eq(sliding_expiry(now, limits)),
    ))
    .returning((sessions::version, sessions::expires_at, sessions::state))
    .get_result::<Written>(c)
    .await
    .optional())?)
}

/// Slides a live session's expiry and nothing else: the state it returns is the row's own, so a
/// change made since the caller read the row is kept, not written over.
pub async fn slide(
    conn: &mut Conn,
    id: &str,
    now: i64,
    limits: Lifetime,
) -> Result<Option<Written>, StoreError> {
    Ok(run!(conn, |c| diesel::update(
        sessions::table
            .find(id)
            .filter(sessions::expires_at.gt(now))
            .filter(sessions::created_at.gt(now - limits.max))
    )
    .set((
        sessions::version.eq(sessions::version + 1),
        sessions::last_seen_at.eq(now),
        sessions::expires_at.eq(sliding_expiry(now, limits)),
    ))
    .returning((sessions::version, sessions::expires_at, sessions::state))
    .get_result::<Written>(c)
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
