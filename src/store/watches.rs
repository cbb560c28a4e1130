//! Watching connections for new posts: one row per connection, holding the person's two settings
//! (cached as a `Versioned` value at `version`), what the watcher last saw, and the lease of the
//! one worker that watches the account. Lease renewals do not touch `version`: nothing the pages
//! show changes with them.

use diesel::prelude::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, QueryableByName,
    Selectable, SelectableHelper,
};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;

use super::schema::watches as w;
use super::{now, Backend, Conn, StoreError};
use crate::run;

pub const STREAM: &str = "stream";
pub const POLL: &str = "poll";

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = w)]
pub struct WatchRow {
    pub platform_id: i64,
    pub user_id: i64,
    pub enabled: bool,
    pub auto_publish: bool,
    pub enabled_at: Option<i64>,
    pub last_status_id: Option<String>,
    pub last_status_url: Option<String>,
    pub last_post_at: Option<i64>,
    pub mode: Option<String>,
    pub problem: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until_ms: Option<i64>,
    pub version: i64,
    pub updated_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = w)]
struct NewWatch<'a> {
    platform_id: i64,
    user_id: i64,
    enabled: bool,
    auto_publish: bool,
    enabled_at: Option<i64>,
    last_status_id: Option<&'a str>,
    version: i64,
    updated_at: i64,
}

pub async fn get(conn: &mut Conn, platform_id: i64) -> Result<Option<WatchRow>, StoreError> {
    Ok(run!(conn, |c| w::table
        .find(platform_id)
        .select(WatchRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Saves the person's two settings; returns the row as it now is. Turning watching on starts it
/// afresh: the posts after `start_after` (the account's newest when it was turned on; None when
/// the instance could not say: then those made since `enabled_at`), no old problem. Turning it
/// off frees the account from its worker.
pub async fn save_settings(
    conn: &mut Conn,
    platform_id: i64,
    user_id: i64,
    enabled: bool,
    auto_publish: bool,
    start_after: Option<&str>,
) -> Result<WatchRow, StoreError> {
    let now = now();
    let old = get(conn, platform_id).await?;
    match old {
        None => {
            let new = NewWatch {
                platform_id,
                user_id,
                enabled,
                auto_publish,
                enabled_at: enabled.then_some(now),
                last_status_id: start_after.filter(|_| enabled),
                version: 1,
                updated_at: now,
            };
            run!(conn, |c| diesel::insert_into(w::table)
                .values(&new)
                .execute(c)
                .await)?;
        }
        Some(old) => {
            let turned_on = enabled && !old.enabled;
            let target = w::table.find(platform_id);
            if turned_on {
                run!(conn, |c| diesel::update(target)
                    .set((
                        w::enabled.eq(true),
                        w::auto_publish.eq(auto_publish),
                        w::enabled_at.eq(Some(now)),
                        w::last_status_id.eq(start_after),
                        w::last_status_url.eq(None::<String>),
                        w::last_post_at.eq(None::<i64>),
                        w::mode.eq(None::<String>),
                        w::problem.eq(None::<String>),
                        w::version.eq(w::version + 1),
                        w::updated_at.eq(now),
                    ))
                    .execute(c)
                    .await)?;
            } else if !enabled {
                run!(conn, |c| diesel::update(target)
                    .set((
                        w::enabled.eq(false),
                        w::auto_publish.eq(auto_publish),
                        w::mode.eq(None::<String>),
                        w::lease_owner.eq(None::<String>),
                        w::lease_until_ms.eq(None::<i64>),
                        w::version.eq(w::version + 1),
                        w::updated_at.eq(now),
                    ))
                    .execute(c)
                    .await)?;
            } else {
                run!(conn, |c| diesel::update(target)
                    .set((
                        w::auto_publish.eq(auto_publish),
                        w::version.eq(w::version + 1),
                        w::updated_at.eq(now),
                    ))
                    .execute(c)
                    .await)?;
            }
        }
    }
    get(conn, platform_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("a watch row vanished in its own transaction".into()))
}

fn sql_for(conn: &Conn, sql: String) -> String {
    if conn.backend() == Backend::Sqlite {
        sql.replace('$', "?")
    } else {
        sql
    }
}

/// Which watches may be watched now: on, their connection's token not refused, their person
/// active.
const WATCHABLE: &str = "w.enabled \
    AND EXISTS (SELECT 1 FROM platform_connections p JOIN users u ON u.id = p.user_id \
                WHERE p.id = w.platform_id AND NOT p.needs_reauth AND u.active)";

/// Takes up to `limit` watches nobody holds (or whose holder's lease ran out) for `owner` until
/// `lease_until_ms`, leaving out `skip` (those this worker could not use a moment ago: another
/// worker may). PostgreSQL: `FOR UPDATE SKIP LOCKED`, so two workers never take the same one;
/// SQLite: one conditional UPDATE (one writer at a time).
pub async fn claim(
    conn: &mut Conn,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: i64,
    skip: &[i64],
) -> Result<Vec<WatchRow>, StoreError> {
    // Numbers only, written into the statement (a list of binds of varying length would not be
    // one statement).
    let skipped = if skip.is_empty() {
        String::new()
    } else {
        let ids: Vec<String> = skip.iter().map(i64::to_string).collect();
        format!("AND w.platform_id NOT IN ({}) ", ids.join(","))
    };
    let lock = match conn.backend() {
        Backend::Postgres => "FOR UPDATE OF w SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = sql_for(
        conn,
        format!(
            "UPDATE watches SET lease_owner = $1, lease_until_ms = $2 \
             WHERE platform_id IN (SELECT w.platform_id FROM watches w \
                 WHERE {WATCHABLE} AND (w.lease_until_ms IS NULL OR w.lease_until_ms < $3) \
                 {skipped}ORDER BY w.platform_id LIMIT $4 {lock}) \
             RETURNING *"
        ),
    );
    Ok(run!(conn, |c| diesel::sql_query(&sql)
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(lease_until_ms)
        .bind::<BigInt, _>(now_ms)
        .bind::<BigInt, _>(limit)
        .load::<WatchRow>(c)
        .await)?)
}

#[derive(QueryableByName)]
struct Held {
    #[diesel(sql_type = BigInt)]
    platform_id: i64,
}

/// Renews every lease `owner` holds in one statement; returns the connections it still may
/// watch (one turned off, whose token was refused or whose person was deactivated is not
/// among them).
pub async fn renew(
    conn: &mut Conn,
    owner: &str,
    lease_until_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    let sql = sql_for(
        conn,
        format!(
            "UPDATE watches SET lease_until_ms = $2 \
             WHERE platform_id IN (SELECT w.platform_id FROM watches w \
                 WHERE w.lease_owner = $1 AND {WATCHABLE}) \
             RETURNING platform_id"
        ),
    );
    let held: Vec<Held> = run!(conn, |c| diesel::sql_query(&sql)
        .bind::<Text, _>(owner)
        .bind::<BigInt, _>(lease_until_ms)
        .load::<Held>(c)
        .await)?;
    Ok(held.into_iter().map(|h| h.platform_id).collect())
}

/// Gives one watch back (its watcher stopped): any worker may take it up at once.
pub async fn release(conn: &mut Conn, platform_id: i64, owner: &str) -> Result<(), StoreError> {
    run!(conn, |c| diesel::update(
        w::table.find(platform_id).filter(w::lease_owner.eq(owner))
    )
    .set((
        w::lease_owner.eq(None::<String>),
        w::lease_until_ms.eq(None::<i64>),
    ))
    .execute(c)
    .await)?;
    Ok(())
}

/// Gives back every watch `owner` holds (the worker is stopping): another takes them at once.
pub async fn release_all(conn: &mut Conn, owner: &str) -> Result<usize, StoreError> {
    Ok(run!(conn, |c| diesel::update(
        w::table.filter(w::lease_owner.eq(owner))
    )
    .set((
        w::lease_owner.eq(None::<String>),
        w::lease_until_ms.eq(None::<i64>),
    ))
    .execute(c)
    .await)?)
}

/// What the watcher saw, written while `owner` holds the watch: the newest post handled (when
/// it moved on) and how the account is watched, or what troubles it. None when the watch is no
/// longer `owner`'s.
pub async fn record(
    conn: &mut Conn,
    platform_id: i64,
    owner: &str,
    seen: Option<(&str, &str)>,
    mode: Option<&str>,
    problem: Option<&str>,
) -> Result<Option<WatchRow>, StoreError> {
    let now = now();
    let target = w::table.find(platform_id).filter(w::lease_owner.eq(owner));
    let n = match seen {
        Some((id, url)) => run!(conn, |c| diesel::update(target)
            .set((
                w::last_status_id.eq(Some(id)),
                w::last_status_url.eq(Some(url)),
                w::last_post_at.eq(Some(now)),
                w::mode.eq(mode),
                w::problem.eq(problem),
                w::version.eq(w::version + 1),
                w::updated_at.eq(now),
            ))
            .execute(c)
            .await)?,
        None => run!(conn, |c| diesel::update(target)
            .set((
                w::mode.eq(mode),
                w::problem.eq(problem),
                w::version.eq(w::version + 1),
                w::updated_at.eq(now),
            ))
            .execute(c)
            .await)?,
    };
    if n == 0 {
        return Ok(None);
    }
    get(conn, platform_id).await
}

/// Whether `owner` still holds the watch.
pub async fn holds(conn: &mut Conn, platform_id: i64, owner: &str) -> Result<bool, StoreError> {
    let n: i64 = run!(conn, |c| w::table
        .find(platform_id)
        .filter(w::lease_owner.eq(owner))
        .count()
        .get_result(c)
        .await)?;
    Ok(n == 1)
}

/// Moves the cursor without saying a post was seen (a first look that found only older posts).
pub async fn set_cursor(
    conn: &mut Conn,
    platform_id: i64,
    owner: &str,
    status_id: &str,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(
        w::table.find(platform_id).filter(w::lease_owner.eq(owner))
    )
    .set(w::last_status_id.eq(Some(status_id)))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Watched connections (for the admin overview and metrics).
pub async fn count_enabled(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| w::table
        .filter(w::enabled.eq(true))
        .count()
        .get_result(c)
        .await)?)
}
