//! Publishing jobs: one row per post, reused. Approving a draft bumps `requested`; a worker that
//! finishes writes the `requested` it started from into `handled`, so an approval that came while
//! it worked leaves the row due and the post is edited again with it. Claimed under a lease like
//! caption runs; every write of a worker is conditional on still holding it.

use diesel::prelude::{
    ExpressionMethods, Insertable, QueryDsl, Queryable, QueryableByName, Selectable,
};
use diesel::sql_types::{BigInt, Text};
use diesel::upsert::excluded;
use diesel_async::RunQueryDsl;

use super::schema::publish_jobs as pj;
use super::{now, Backend, Conn, StoreError};
use crate::run;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = pj)]
pub struct PublishJob {
    pub id: i64,
    pub user_id: i64,
    pub platform_id: i64,
    pub status_id: String,
    pub requested: i64,
    pub handled: i64,
    pub attempts: i32,
    pub run_after: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = pj)]
struct NewJob<'a> {
    user_id: i64,
    platform_id: i64,
    status_id: &'a str,
    requested: i64,
    handled: i64,
    attempts: i32,
    run_after: i64,
    created_at: i64,
    updated_at: i64,
}

/// Asks for the post's approved drafts to go out, now: a new row, or the post's row made due
/// again (a fresh request starts its tries afresh).
pub async fn request(
    conn: &mut Conn,
    user_id: i64,
    platform_id: i64,
    status_id: &str,
) -> Result<(), StoreError> {
    let now = now();
    // While the connection's rate limit is used up (its jobs paused, without an error), a new
    // request waits with them.
    let paused_until: Option<i64> = run!(conn, |c| pj::table
        .filter(pj::platform_id.eq(platform_id))
        .filter(pj::requested.gt(pj::handled))
        .filter(pj::error.is_null())
        .filter(pj::run_after.gt(now))
        .select(diesel::dsl::max(pj::run_after))
        .first(c)
        .await)?;
    let run_after = paused_until.unwrap_or(now).max(now);
    let new = NewJob {
        user_id,
        platform_id,
        status_id,
        requested: 1,
        handled: 0,
        attempts: 0,
        run_after,
        created_at: now,
        updated_at: now,
    };
    run!(conn, |c| diesel::insert_into(pj::table)
        .values(&new)
        .on_conflict((pj::platform_id, pj::status_id))
        .do_update()
        .set((
            pj::requested.eq(pj::requested + 1),
            pj::attempts.eq(0),
            pj::error.eq(None::<String>),
            pj::run_after.eq(excluded(pj::run_after)),
            pj::updated_at.eq(excluded(pj::updated_at)),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Takes the job that is due longest (asked for and past its backoff, its lease free or run out)
/// for `owner` until `lease_until_ms`, one post of a connection at a time across all workers: an
/// instance's rate limit is per account, and one caller at a time knows exactly what is left of
/// it. PostgreSQL: `FOR UPDATE SKIP LOCKED` under a transaction lock (so two claims cannot both
/// see a connection free); SQLite: one conditional UPDATE (one writer at a time).
pub async fn claim(
    conn: &mut Conn,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<PublishJob>, StoreError> {
    let now_s = now_ms / 1000;
    let lock = match conn.backend() {
        Backend::Postgres => {
            run!(conn, |c| diesel::sql_query(
                "SELECT pg_advisory_xact_lock(7061745102) IS NULL AS locked"
            )
            .execute(c)
            .await)?;
            "FOR UPDATE OF j SKIP LOCKED"
        }
        Backend::Sqlite => "",
    };
    let mut sql = format!(
        "UPDATE publish_jobs SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1, \
         updated_at = $3 \
         WHERE id = (SELECT j.id FROM publish_jobs j \
             WHERE j.requested > j.handled AND j.run_after <= $3 \
               AND (j.lease_until_ms IS NULL OR j.lease_until_ms < $4) \
               AND NOT EXISTS (SELECT 1 FROM publish_jobs o WHERE o.platform_id = j.platform_id \
                   AND o.id <> j.id AND o.lease_until_ms >= $4) \
             ORDER BY j.run_after, j.id LIMIT 1 {lock}) \
         RETURNING *"
    );
    if conn.backend() == Backend::Sqlite {
        sql = sql.replace('$', "?");
    }
    let rows: Vec<PublishJob> = run!(conn, |c| diesel::sql_query(&sql)
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(lease_until_ms)
        .bind::<BigInt, _>(now_s)
        .bind::<BigInt, _>(now_ms)
        .load::<PublishJob>(c)
        .await)?;
    Ok(rows.into_iter().next())
}

type Held<'a> = diesel::dsl::Filter<
    diesel::dsl::Find<pj::table, i64>,
    diesel::dsl::Eq<pj::lease_owner, &'a str>,
>;

/// The job, while `owner` holds it: every write of a worker goes through this.
fn held(id: i64, owner: &str) -> Held<'_> {
    pj::table.find(id).filter(pj::lease_owner.eq(owner))
}

/// Extends the lease; false when the job is no longer `owner`'s.
pub async fn renew(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    lease_until_ms: i64,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(held(id, owner))
        .set(pj::lease_until_ms.eq(lease_until_ms))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// The job is done up to `handled` (the `requested` it was claimed at).
pub async fn finish(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    handled: i64,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(held(id, owner))
        .set((
            pj::handled.eq(handled),
            pj::attempts.eq(0),
            pj::error.eq(None::<String>),
            pj::lease_owner.eq(None::<String>),
            pj::lease_until_ms.eq(None::<i64>),
            pj::updated_at.eq(now()),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Puts the job back until the connection's rate limit resets (`run_after`, seconds), without
/// counting a try.
pub async fn pause(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    run_after: i64,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(held(id, owner))
        .set((
            pj::run_after.eq(run_after),
            pj::attempts.eq(pj::attempts - 1),
            pj::lease_owner.eq(None::<String>),
            pj::lease_until_ms.eq(None::<i64>),
            pj::updated_at.eq(now()),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Holds back the connection's other waiting jobs until `until` (seconds): its rate limit is used
/// up, for every worker.
pub async fn pause_connection(
    conn: &mut Conn,
    platform_id: i64,
    until: i64,
) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::update(
        pj::table
            .filter(pj::platform_id.eq(platform_id))
            .filter(pj::requested.gt(pj::handled))
            .filter(pj::run_after.lt(until))
            .filter(pj::lease_owner.is_null())
    )
    .set(pj::run_after.eq(until))
    .execute(c)
    .await)?)
}

/// Puts the job back, due at `run_after` (seconds), with why.
pub async fn retry_later(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    run_after: i64,
    error: &str,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(held(id, owner))
        .set((
            pj::run_after.eq(run_after),
            pj::error.eq(error),
            pj::lease_owner.eq(None::<String>),
            pj::lease_until_ms.eq(None::<i64>),
            pj::updated_at.eq(now()),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Removes jobs done before `before` (seconds): a post approved again gets a new row.
pub async fn delete_done_before(conn: &mut Conn, before: i64) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::delete(
        pj::table
            .filter(pj::handled.ge(pj::requested))
            .filter(pj::updated_at.lt(before))
    )
    .execute(c)
    .await)?)
}
