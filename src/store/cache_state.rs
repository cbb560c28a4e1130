//! The cache generation (see migrations): which Redis server the cached values belong to.

use diesel::prelude::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;

use super::schema::cache_state;
use super::{Conn, StoreError};
use crate::run;

/// Moves to a new generation if Redis is now a different server than the one last seen (its
/// run_id changed: a restart or a restore), then returns the current generation. Optimistic: of
/// several instances noticing the same restart, one moves and the others read its result.
///
/// A new generation is a random number, not the next one: two installs that share a Redis (and
/// its key prefix) by mistake would otherwise count 1, 2, … in step and read each other's values;
/// with random generations their keys never meet.
pub async fn reconcile(conn: &mut Conn, redis_run_id: &str) -> Result<i64, StoreError> {
    let (current, seen): (i64, Option<String>) = run!(conn, |c| cache_state::table
        .find(1)
        .select((cache_state::generation, cache_state::redis_run_id))
        .first(c)
        .await)?;
    if seen.as_deref() == Some(redis_run_id) {
        return Ok(current);
    }
    run!(conn, |c| diesel::update(
        cache_state::table
            .find(1)
            .filter(cache_state::generation.eq(current))
    )
    .set((
        cache_state::generation.eq(new_generation(current)),
        cache_state::redis_run_id.eq(Some(redis_run_id)),
    ))
    .execute(c)
    .await)?;
    generation(conn).await
}

/// A random generation in 1 ..= 2^52 (exact in Lua's doubles), never the current one.
fn new_generation(current: i64) -> i64 {
    loop {
        let candidate = (rand::random::<u64>() >> 12) as i64 + 1;
        if candidate != current {
            return candidate;
        }
    }
}

pub async fn generation(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| cache_state::table
        .find(1)
        .select(cache_state::generation)
        .first::<i64>(c)
        .await)?)
}
