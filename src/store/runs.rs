//! Caption runs: each is a row of caption_jobs, at once the job a worker claims (with a lease it
//! renews) and the run's progress. Every change to a running run is conditional on the caller
//! still holding its lease, so a worker that lost its lease (it stalled, another took over) can
//! write nothing more. Every change bumps `version`, the version of the cached progress.

use diesel::prelude::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, QueryableByName,
    Selectable, SelectableHelper,
};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use super::schema::caption_jobs as cj;
use super::{now, Backend, Conn, StoreError};
use crate::run;

pub const QUEUED: &str = "queued";
pub const RUNNING: &str = "running";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";
pub const CANCELLED: &str = "cancelled";
pub const ACTIVE: [&str; 2] = [QUEUED, RUNNING];
pub const FINISHED: [&str; 3] = [COMPLETED, FAILED, CANCELLED];

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = cj)]
pub struct RunRow {
    pub id: i64,
    pub user_id: i64,
    pub platform_id: i64,
    pub state: String,
    pub settings: String,
    pub posts_limit: i32,
    pub posts_scanned: i32,
    pub posts_seen: i32,
    pub images_found: i32,
    pub drafts_made: i32,
    pub media_skipped: i32,
    pub images_failed: i32,
    pub step: String,
    pub error: Option<String>,
    pub resume_after: Option<String>,
    pub attempts: i32,
    pub run_after: i64,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub version: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = cj)]
pub struct NewRun<'a> {
    pub user_id: i64,
    pub platform_id: i64,
    pub state: &'a str,
    pub settings: &'a str,
    pub posts_limit: i32,
    pub step: &'a str,
    pub run_after: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Queues a run; a unique violation means the connection already has an active one.
pub async fn insert(conn: &mut Conn, new: &NewRun<'_>) -> Result<RunRow, StoreError> {
    Ok(run!(conn, |c| diesel::insert_into(cj::table)
        .values(new)
        .returning(RunRow::as_returning())
        .get_result(c)
        .await)?)
}

/// The run, only if it is that person's.
pub async fn owned(conn: &mut Conn, id: i64, user_id: i64) -> Result<Option<RunRow>, StoreError> {
    Ok(run!(conn, |c| cj::table
        .find(id)
        .filter(cj::user_id.eq(user_id))
        .select(RunRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// The connection's newest run.
pub async fn latest(conn: &mut Conn, platform_id: i64) -> Result<Option<RunRow>, StoreError> {
    Ok(run!(conn, |c| cj::table
        .filter(cj::platform_id.eq(platform_id))
        .order(cj::id.desc())
        .select(RunRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// A person's runs, newest first.
pub async fn for_user(
    conn: &mut Conn,
    user_id: i64,
    limit: i64,
    offset: i64,
) -> Result<Vec<RunRow>, StoreError> {
    Ok(run!(conn, |c| cj::table
        .filter(cj::user_id.eq(user_id))
        .order(cj::id.desc())
        .limit(limit)
        .offset(offset)
        .select(RunRow::as_select())
        .load(c)
        .await)?)
}

/// Runs of one person carried out at once, across all workers: a person with many connections
/// cannot fill every worker while someone else waits.
pub const PER_PERSON: i64 = 2;

/// Takes the oldest run that is due (queued and past its backoff) or whose lease ran out, for
/// `owner` until `lease_until_ms`; to be called in a write transaction. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent workers
/// each take a different row without waiting; SQLite: one conditional UPDATE, atomic because
/// SQLite runs one writer at a time.
pub async fn claim(
    conn: &mut Conn,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<RunRow>, StoreError> {
    let now_s = now_ms / 1000;
    let rows: Vec<RunRow> = match conn.backend() {
        Backend::Postgres => {
            // Claims wait for each other (the transaction's lock, released at its commit), so
            // each sees the runs the one before it took: the per-person count below holds even
            // when every worker is woken at once. SQLite runs one writer at a time anyway.
            run!(conn, |c| diesel::sql_query(
                "SELECT pg_advisory_xact_lock(7061745101) IS NULL AS locked"
            )
            .execute(c)
            .await)?;
            let sql = "UPDATE caption_jobs SET state = 'running', lease_owner = $1, \
                lease_until_ms = $2, attempts = attempts + 1, \
                started_at = COALESCE(started_at, $3), updated_at = $3, version = version + 1 \
                WHERE id = (SELECT j.id FROM caption_jobs j \
                    WHERE ((j.state = 'queued' AND j.run_after <= $3) \
                       OR (j.state = 'running' AND j.lease_until_ms < $4)) \
                      AND (SELECT count(*) FROM caption_jobs r WHERE r.user_id = j.user_id \
                           AND r.state = 'running' AND r.lease_until_ms >= $4) < $5 \
                    ORDER BY j.id LIMIT 1 FOR UPDATE OF j SKIP LOCKED) \
                RETURNING *";
            run!(conn, |c| diesel::sql_query(sql)
                .bind::<Text, _>(owner)
                .bind::<BigInt, _>(lease_until_ms)
                .bind::<BigInt, _>(now_s)
                .bind::<BigInt, _>(now_ms)
                .bind::<BigInt, _>(PER_PERSON)
                .load::<RunRow>(c)
                .await)?
        }
        Backend::Sqlite => {
            let sql = "UPDATE caption_jobs SET state = 'running', lease_owner = ?1, \
                lease_until_ms = ?2, attempts = attempts + 1, \
                started_at = COALESCE(started_at, ?3), updated_at = ?3, version = version + 1 \
                WHERE id = (SELECT j.id FROM caption_jobs j \
                    WHERE ((j.state = 'queued' AND j.run_after <= ?3) \
                       OR (j.state = 'running' AND j.lease_until_ms < ?4)) \
                      AND (SELECT count(*) FROM caption_jobs r WHERE r.user_id = j.user_id \
                           AND r.state = 'running' AND r.lease_until_ms >= ?4) < ?5 \
                    ORDER BY j.id LIMIT 1) \
                RETURNING *";
            run!(conn, |c| diesel::sql_query(sql)
                .bind::<Text, _>(owner)
                .bind::<BigInt, _>(lease_until_ms)
                .bind::<BigInt, _>(now_s)
                .bind::<BigInt, _>(now_ms)
                .bind::<BigInt, _>(PER_PERSON)
                .load::<RunRow>(c)
                .await)?
        }
    };
    Ok(rows.into_iter().next())
}

/// Extends the lease; false when the run is no longer this worker's (cancelled, finished, deleted,
/// or taken over after the lease ran out).
pub async fn renew(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    lease_until_ms: i64,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(held(id, owner))
        .set(cj::lease_until_ms.eq(lease_until_ms))
        .execute(c)
        .await)?;
    Ok(n == 1)
}

/// Whether `owner` still holds the running run (a read: the cheap check made often).
pub async fn still_held(conn: &mut Conn, id: i64, owner: &str) -> Result<bool, StoreError> {
    let n = run!(conn, |c| cj::table
        .find(id)
        .filter(cj::lease_owner.eq(owner))
        .filter(cj::state.eq(RUNNING))
        .count()
        .get_result::<i64>(c)
        .await)?;
    Ok(n == 1)
}

type Held<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<
        diesel::dsl::Find<cj::table, i64>,
        diesel::dsl::Eq<cj::lease_owner, &'a str>,
    >,
    diesel::dsl::Eq<cj::state, &'static str>,
>;

/// The run, while `owner` holds it: every write of a worker goes through this.
fn held(id: i64, owner: &str) -> Held<'_> {
    cj::table
        .find(id)
        .filter(cj::lease_owner.eq(owner))
        .filter(cj::state.eq(RUNNING))
}

/// What a step of a run adds to its counters.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub posts_seen: i32,
    pub posts_scanned: i32,
    pub images_found: i32,
    pub drafts_made: i32,
    pub media_skipped: i32,
    pub images_failed: i32,
    pub step: Option<String>,
    /// The post just finished: a resumed run reads on from the posts older than it.
    pub resume_after: Option<String>,
}

/// Adds to a held run's counters; None when the run is no longer this worker's (nothing written).
pub async fn advance(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    p: &Progress,
) -> Result<Option<RunRow>, StoreError> {
    let held = held(id, owner);
    let counters = (
        cj::posts_seen.eq(cj::posts_seen + p.posts_seen),
        cj::posts_scanned.eq(cj::posts_scanned + p.posts_scanned),
        cj::images_found.eq(cj::images_found + p.images_found),
        cj::drafts_made.eq(cj::drafts_made + p.drafts_made),
        cj::media_skipped.eq(cj::media_skipped + p.media_skipped),
        cj::images_failed.eq(cj::images_failed + p.images_failed),
        cj::version.eq(cj::version + 1),
        cj::updated_at.eq(now()),
    );
    let row = match (p.step.as_deref(), p.resume_after.as_deref()) {
        (Some(step), Some(after)) => run!(conn, |c| diesel::update(held)
            .set((counters, cj::step.eq(step), cj::resume_after.eq(after)))
            .returning(RunRow::as_returning())
            .get_result(c)
            .await
            .optional())?,
        (Some(step), None) => run!(conn, |c| diesel::update(held)
            .set((counters, cj::step.eq(step)))
            .returning(RunRow::as_returning())
            .get_result(c)
            .await
            .optional())?,
        (None, Some(after)) => run!(conn, |c| diesel::update(held)
            .set((counters, cj::resume_after.eq(after)))
            .returning(RunRow::as_returning())
            .get_result(c)
            .await
            .optional())?,
        (None, None) => run!(conn, |c| diesel::update(held)
            .set(counters)
            .returning(RunRow::as_returning())
            .get_result(c)
            .await
            .optional())?,
    };
    Ok(row)
}

/// Ends a held run (completed or failed), with a step in words and, for a failure, why.
pub async fn finish(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    state: &str,
    step: &str,
    error: Option<&str>,
) -> Result<Option<RunRow>, StoreError> {
    let now = now();
    Ok(run!(conn, |c| diesel::update(held(id, owner))
        .set((
            cj::state.eq(state),
            cj::step.eq(step),
            cj::error.eq(error),
            cj::lease_owner.eq(None::<String>),
            cj::lease_until_ms.eq(None::<i64>),
            cj::finished_at.eq(now),
            cj::updated_at.eq(now),
            cj::version.eq(cj::version + 1),
        ))
        .returning(RunRow::as_returning())
        .get_result(c)
        .await
        .optional())?)
}

/// Puts a held run back in the queue after a failure worth retrying, due at `run_after`.
pub async fn requeue(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    run_after: i64,
    step: &str,
) -> Result<Option<RunRow>, StoreError> {
    Ok(run!(conn, |c| diesel::update(held(id, owner))
        .set((
            cj::state.eq(QUEUED),
            cj::step.eq(step),
            cj::run_after.eq(run_after),
            cj::lease_owner.eq(None::<String>),
            cj::lease_until_ms.eq(None::<i64>),
            cj::updated_at.eq(now()),
            cj::version.eq(cj::version + 1),
        ))
        .returning(RunRow::as_returning())
        .get_result(c)
        .await
        .optional())?)
}

/// Gives a held run back to the queue, due now, without counting the try (the worker stopped).
pub async fn hand_back(
    conn: &mut Conn,
    id: i64,
    owner: &str,
    step: &str,
) -> Result<Option<RunRow>, StoreError> {
    let now = now();
    Ok(run!(conn, |c| diesel::update(held(id, owner))
        .set((
            cj::state.eq(QUEUED),
            cj::step.eq(step),
            cj::run_after.eq(now),
            cj::attempts.eq(cj::attempts - 1),
            cj::lease_owner.eq(None::<String>),
            cj::lease_until_ms.eq(None::<i64>),
            cj::updated_at.eq(now),
            cj::version.eq(cj::version + 1),
        ))
        .returning(RunRow::as_returning())
        .get_result(c)
        .await
        .optional())?)
}

/// Cancels the connection's active run, whoever holds it; the worker sees it within its check
/// interval and drops what it is doing. None when there was no active run.
pub async fn cancel_active(
    conn: &mut Conn,
    platform_id: i64,
    user_id: i64,
) -> Result<Option<RunRow>, StoreError> {
    let now = now();
    Ok(run!(conn, |c| diesel::update(
        cj::table
            .filter(cj::platform_id.eq(platform_id))
            .filter(cj::user_id.eq(user_id))
            .filter(cj::state.eq_any(ACTIVE))
    )
    .set((
        cj::state.eq(CANCELLED),
        cj::step.eq("Cancelled; the drafts it made are kept"),
        cj::lease_owner.eq(None::<String>),
        cj::lease_until_ms.eq(None::<i64>),
        cj::finished_at.eq(now),
        cj::updated_at.eq(now),
        cj::version.eq(cj::version + 1),
    ))
    .returning(RunRow::as_returning())
    .get_result(c)
    .await
    .optional())?)
}

/// Every person's runs, newest first, in one state or all (the admin area).
pub async fn all(
    conn: &mut Conn,
    state: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<RunRow>, StoreError> {
    macro_rules! query {
        () => {
            cj::table
                .order(cj::id.desc())
                .limit(limit)
                .offset(offset)
                .select(RunRow::as_select())
        };
    }
    Ok(match state {
        Some(state) => run!(conn, |c| query!().filter(cj::state.eq(state)).load(c).await)?,
        None => run!(conn, |c| query!().load(c).await)?,
    })
}

/// How many runs are in each state.
pub async fn counts(conn: &mut Conn) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(run!(conn, |c| cj::table
        .group_by(cj::state)
        .select((cj::state, diesel::dsl::count_star()))
        .load(c)
        .await)?)
}

pub async fn by_id(conn: &mut Conn, id: i64) -> Result<Option<RunRow>, StoreError> {
    Ok(run!(conn, |c| cj::table
        .find(id)
        .select(RunRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Puts a failed run back in the queue, to go on from where it stopped (a unique violation: the
/// connection has another active run).
pub async fn retry_failed(conn: &mut Conn, id: i64) -> Result<Option<RunRow>, StoreError> {
    let now = now();
    Ok(run!(conn, |c| diesel::update(
        cj::table.find(id).filter(cj::state.eq(FAILED))
    )
    .set((
        cj::state.eq(QUEUED),
        cj::step.eq("Waiting for a worker (retried by an admin)"),
        cj::error.eq(None::<String>),
        cj::attempts.eq(0),
        cj::run_after.eq(now),
        cj::finished_at.eq(None::<i64>),
        cj::updated_at.eq(now),
        cj::version.eq(cj::version + 1),
    ))
    .returning(RunRow::as_returning())
    .get_result(c)
    .await
    .optional())?)
}

/// Removes finished runs that ended before `before`, keeping each connection's newest run (the
/// caption page shows it). Their drafts stay.
pub async fn delete_finished_before(conn: &mut Conn, before: i64) -> Result<usize, StoreError> {
    let sql = match conn.backend() {
        Backend::Postgres => {
            "DELETE FROM caption_jobs WHERE state IN ('completed', 'failed', 'cancelled') \
             AND finished_at < $1 \
             AND id NOT IN (SELECT MAX(id) FROM caption_jobs GROUP BY platform_id)"
        }
        Backend::Sqlite => {
            "DELETE FROM caption_jobs WHERE state IN ('completed', 'failed', 'cancelled') \
             AND finished_at < ?1 \
             AND id NOT IN (SELECT MAX(id) FROM caption_jobs GROUP BY platform_id)"
        }
    };
    Ok(run!(conn, |c| diesel::sql_query(sql)
        .bind::<BigInt, _>(before)
        .execute(c)
        .await)?)
}

/// The span of posts (newest id, oldest id) that runs of the connection have looked at without a
/// gap.
pub async fn scan_mark(
    conn: &mut Conn,
    platform_id: i64,
) -> Result<Option<(String, String)>, StoreError> {
    use super::schema::scan_marks as sm;
    Ok(run!(conn, |c| sm::table
        .find(platform_id)
        .select((sm::newest, sm::oldest))
        .first::<(String, String)>(c)
        .await
        .optional())?)
}

pub async fn set_scan_mark(
    conn: &mut Conn,
    platform_id: i64,
    newest: &str,
    oldest: &str,
) -> Result<(), StoreError> {
    use super::schema::scan_marks as sm;
    let now = now();
    run!(conn, |c| diesel::insert_into(sm::table)
        .values((
            sm::platform_id.eq(platform_id),
            sm::newest.eq(newest),
            sm::oldest.eq(oldest),
            sm::updated_at.eq(now),
        ))
        .on_conflict(sm::platform_id)
        .do_update()
        .set((
            sm::newest.eq(newest),
            sm::oldest.eq(oldest),
            sm::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}
