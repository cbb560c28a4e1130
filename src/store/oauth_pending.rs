//! OAuth connections started and not yet answered. The session holds the state itself; this table
//! holds its hash so that taking it is one atomic DELETE: however many answers race, one wins.

use diesel::prelude::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;

use super::schema::oauth_pending;
use super::{Conn, StoreError};
use crate::run;

pub async fn insert(
    conn: &mut Conn,
    state_hash: &str,
    user_id: i64,
    now: i64,
) -> Result<(), StoreError> {
    run!(conn, |c| diesel::insert_into(oauth_pending::table)
        .values((
            oauth_pending::state_hash.eq(state_hash),
            oauth_pending::user_id.eq(user_id),
            oauth_pending::created_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Takes the pending state out, if it is this person's and started after `started_after`; true
/// for the one caller that got it.
pub async fn take(
    conn: &mut Conn,
    state_hash: &str,
    user_id: i64,
    started_after: i64,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::delete(
        oauth_pending::table
            .filter(oauth_pending::state_hash.eq(state_hash))
            .filter(oauth_pending::user_id.eq(user_id))
            .filter(oauth_pending::created_at.gt(started_after))
    )
    .execute(c)
    .await)?;
    Ok(n == 1)
}

pub async fn delete_older_than(conn: &mut Conn, cutoff: i64) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::delete(
        oauth_pending::table.filter(oauth_pending::created_at.le(cutoff))
    )
    .execute(c)
    .await)?)
}
