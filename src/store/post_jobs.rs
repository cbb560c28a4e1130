//! New posts a watcher found, as small jobs on the worker's queue: one row per post (unique on
//! connection and post id, so a post found by the stream and again by a catch-up is one job),
//! claimed under a lease like runs and publishing, one post of a connection at a time.

use diesel::prelude::{
    ExpressionMethods, Insertable, QueryDsl, Queryable, QueryableByName, Selectable,
};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use super::schema::post_jobs as pj;
use super::{now, Backend, Conn, StoreError};
use crate::run;

pub const QUEUED: &str = "queued";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = pj)]
pub struct PostJob {
    pub id: i64,
    pub user_id: i64,
    pub platform_id: i64,
    pub status_id: String,
    pub status_json: String,
    pub state: String,
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
    status_json: &'a str,
    state: &'a str,
    attempts: i32,
    run_after: i64,
    created_at: i64,
    updated_at: i64,
}

/// Queues a post; false when it was queued before (by the stream or an earlier catch-up).
pub async fn enqueue(
    conn: &mut Conn,
    user_id: i64,
    platform_id: i64,
    status_id: &str,
    status_json: &str,
) -> Result<bool, StoreError> {
    let now = now();
    let new = NewJob {
        user_id,
        platform_id,
        status_id,
        status_json,
        state: QUEUED,
        attempts: 0,
        run_after: now,
        created_at: now,
        updated_at: now,
    };
    let n = run!(conn, |c| diesel::insert_into(pj::table)
        .values(&new)
        .on_conflict_do_nothing()
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// A post edited on the instance (images added, say): its job is queued again with the post as
/// it now is; a worker holding it sees the change and gives it back instead of ending it. Drafts
/// it already has are kept (the job skips them).
pub async fn requeue_edited(
    conn: &mut Conn,
    user_id: i64,
    platform_id: i64,
    status_id: &str,
    status_json: &str,
) -> Result<bool, StoreError> {
    if enqueue(conn, user_id, platform_id, status_id, status_json).await? {
        return Ok(true);
    }
    let n = run!(conn, |c| diesel::update(
        pj::table
            .filter(pj::platform_id.eq(platform_id))
            .filter(pj::status_id.eq(status_id))
    )
    .set((
        pj::state.eq(QUEUED),
        pj::status_json.eq(status_json),
        pj::attempts.eq(0),
        pj::error.eq(None::<String>),
        pj::run_after.eq(now()),
        pj::updated_at.eq(now()),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Takes the job that is due longest for `owner` until `lease_until_ms`, one post of a
/// connection at a time across all workers (its pause between posts applies). PostgreSQL: `FOR
/// UPDATE SKIP LOCKED` under a transaction lock; SQLite: one conditional UPDATE.
pub async fn claim(
    conn: &mut Conn,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<PostJob>, StoreError> {
    let now_s = now_ms / 1000;
    let lock = match conn.backend() {
        Backend::Postgres => {
            run!(conn, |c| diesel::sql_query(
                "SELECT pg_advisory_xact_lock(7061745104) IS NULL AS locked"
            )
            .execute(c)
            .await)?;
            "FOR UPDATE OF j SKIP LOCKED"
        }
        Backend::Sqlite => "",
    };
    let mut sql = format!(
        "UPDATE post_jobs SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1, \
         updated_at = $3 \
         WHERE id = (SELECT j.id FROM post_jobs j \
             WHERE j.state = 'queued' AND j.run_after <= $3 \
               AND (j.lease_until_ms IS NULL OR j.lease_until_ms < $4) \
               AND NOT EXISTS (SELECT 1 FROM post_jobs o WHERE o.platform_id = j.platform_id \
                   AND o.id <> j.id AND o.lease_until_ms >= $4) \
               AND EXISTS (SELECT 1 FROM users u WHERE u.id = j.user_id AND u.active) \
             ORDER BY j.run_after, j.id LIMIT 1 {lock}) \
         RETURNING *"
    );
    if conn.backend() == Backend::Sqlite {
        sql = sql.replace('$', "?");
    }
    let rows: Vec<PostJob> = run!(conn, |c| diesel::sql_query(&sql)
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(lease_until_ms)
        .bind::<BigInt, _>(now_s)
        .bind::<BigInt, _>(now_ms)
        .load::<PostJob>(c)
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

/// Ends the job (`DONE` or `FAILED` with why).
pub async fn finish(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    state: &str,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(held(id, owner))
        .set((
            pj::state.eq(state),
            pj::error.eq(error),
            pj::lease_owner.eq(None::<String>),
            pj::lease_until_ms.eq(None::<i64>),
            pj::updated_at.eq(now()),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Puts the job back, due at `run_after` (seconds), with why; `counted` false gives the try back
/// (the worker stopping is not the post's fault).
pub async fn retry_later(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    run_after: i64,
    error: Option<&str>,
    counted: bool,
) -> Result<bool, StoreError> {
    let give_back = i32::from(!counted);
    let n = run!(conn, |c| diesel::update(held(id, owner))
        .set((
            pj::run_after.eq(run_after),
            pj::attempts.eq(pj::attempts - give_back),
            pj::error.eq(error),
            pj::lease_owner.eq(None::<String>),
            pj::lease_until_ms.eq(None::<i64>),
            pj::updated_at.eq(now()),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Holds the connection's other queued posts back until `until` (seconds): its pause between
/// posts.
pub async fn delay_connection(
    conn: &mut Conn,
    platform_id: i64,
    until: i64,
) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::update(
        pj::table
            .filter(pj::platform_id.eq(platform_id))
            .filter(pj::state.eq(QUEUED))
            .filter(pj::run_after.lt(until))
            .filter(pj::lease_owner.is_null())
    )
    .set(pj::run_after.eq(until))
    .execute(c)
    .await)?)
}

/// A post deleted on the instance: its job is done with nothing to do (a worker holding it sees
/// that before it commits anything).
pub async fn drop_post(
    conn: &mut Conn,
    platform_id: i64,
    status_id: &str,
) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::update(
        pj::table
            .filter(pj::platform_id.eq(platform_id))
            .filter(pj::status_id.eq(status_id))
            .filter(pj::state.eq(QUEUED))
    )
    .set((
        pj::state.eq(DONE),
        pj::error.eq(Some("the post was deleted")),
        pj::updated_at.eq(now()),
    ))
    .execute(c)
    .await)?)
}

/// The job as it is now.
pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<PostJob>, StoreError> {
    use diesel::prelude::{OptionalExtension, SelectableHelper};
    Ok(run!(conn, |c| pj::table
        .find(id)
        .select(PostJob::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Gives the job back without ending it (it changed while held: another pass takes it up).
pub async fn release(conn: &mut Conn, id: i64, owner: &str) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(held(id, owner))
        .set((
            pj::attempts.eq(0),
            pj::lease_owner.eq(None::<String>),
            pj::lease_until_ms.eq(None::<i64>),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Whether the connection has anything of this post: a draft or a job (a home stream's deletes
/// are mostly other people's posts, which need no write).
pub async fn knows_post(
    conn: &mut Conn,
    platform_id: i64,
    status_id: &str,
) -> Result<bool, StoreError> {
    use super::schema::caption_drafts as cd;
    let jobs: i64 = run!(conn, |c| pj::table
        .filter(pj::platform_id.eq(platform_id))
        .filter(pj::status_id.eq(status_id))
        .count()
        .get_result(c)
        .await)?;
    if jobs > 0 {
        return Ok(true);
    }
    let drafts: i64 = run!(conn, |c| cd::table
        .filter(cd::platform_id.eq(platform_id))
        .filter(cd::status_id.eq(status_id))
        .count()
        .get_result(c)
        .await)?;
    Ok(drafts > 0)
}

/// Queued posts waiting (admin overview).
pub async fn count_queued(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| pj::table
        .filter(pj::state.eq(QUEUED))
        .count()
        .get_result(c)
        .await)?)
}

/// Removes finished jobs older than `before` (seconds); the watch's cursor is past them.
pub async fn delete_finished_before(conn: &mut Conn, before: i64) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::delete(
        pj::table
            .filter(pj::state.ne(QUEUED))
            .filter(pj::updated_at.lt(before))
    )
    .execute(c)
    .await)?)
}

/// A connection's jobs (tests, and the admin's view of a stuck account).
pub async fn for_platform(conn: &mut Conn, platform_id: i64) -> Result<Vec<PostJob>, StoreError> {
    use diesel::prelude::SelectableHelper;
    Ok(run!(conn, |c| pj::table
        .filter(pj::platform_id.eq(platform_id))
        .order(pj::id.asc())
        .select(PostJob::as_select())
        .load(c)
        .await)?)
}
