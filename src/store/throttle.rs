//! Sign-in failure counters in the database: the fallback when Redis is not there.

use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::RunQueryDsl;

use super::schema::login_throttle;
use super::{Conn, StoreError};
use crate::run;

/// (failures, window_start) for a scope, if it has a live window.
pub async fn get(
    conn: &mut Conn,
    scope: &str,
    window_secs: i64,
    now: i64,
) -> Result<Option<(i32, i64)>, StoreError> {
    Ok(run!(conn, |c| login_throttle::table
        .find(scope)
        .filter(login_throttle::window_start.gt(now - window_secs))
        .select((login_throttle::failures, login_throttle::window_start))
        .first::<(i32, i64)>(c)
        .await
        .optional())?)
}

/// Counts one attempt and returns (count, window_start) as the row now has them: one atomic
/// upsert, so concurrent attempts each see their own count. A window older than `window_secs`
/// starts over.
pub async fn record_attempt(
    conn: &mut Conn,
    scope: &str,
    window_secs: i64,
    now: i64,
) -> Result<(i32, i64), StoreError> {
    let fresh = now - window_secs;
    Ok(run!(conn, |c| {
        diesel::insert_into(login_throttle::table)
        .values((
            login_throttle::scope_key.eq(scope),
            login_throttle::failures.eq(1),
            login_throttle::window_start.eq(now),
        ))
        .on_conflict(login_throttle::scope_key)
        .do_update()
        .set((
            login_throttle::failures.eq(diesel::dsl::sql::<diesel::sql_types::Integer>(&format!(
                "CASE WHEN login_throttle.window_start > {fresh} THEN login_throttle.failures + 1 ELSE 1 END"
            ))),
            login_throttle::window_start.eq(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
                "CASE WHEN login_throttle.window_start > {fresh} THEN login_throttle.window_start ELSE {now} END"
            ))),
        ))
        .returning((login_throttle::failures, login_throttle::window_start))
        .get_result::<(i32, i64)>(c)
        .await
    })?)
}

/// Takes one attempt back (a success), never below zero.
pub async fn uncount(conn: &mut Conn, scope: &str) -> Result<(), StoreError> {
    run!(conn, |c| diesel::update(
        login_throttle::table
            .find(scope)
            .filter(login_throttle::failures.gt(0))
    )
    .set(login_throttle::failures.eq(login_throttle::failures - 1))
    .execute(c)
    .await)?;
    Ok(())
}

pub async fn clear(conn: &mut Conn, scopes: &[String]) -> Result<(), StoreError> {
    run!(conn, |c| diesel::delete(
        login_throttle::table.filter(login_throttle::scope_key.eq_any(scopes))
    )
    .execute(c)
    .await)?;
    Ok(())
}

pub async fn delete_older_than(conn: &mut Conn, cutoff: i64) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::delete(
        login_throttle::table.filter(login_throttle::window_start.le(cutoff))
    )
    .execute(c)
    .await)?)
}
