//! The cache generation (see migrations): which Redis server the cached values belong to.

use diesel::prelude::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;

use super::schema::cache_state;
use super::{Conn, StoreError};
use crate::run;

/// Bumps the generation if Redis is now a different server than the one last seen (its run_id
/// changed: a restart or a restore), then returns the current generation. Optimistic: of several
/// instances noticing the same restart, one bumps and the others read its result.
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
        cache_state::generation.eq(current + 1),
        cache_state::redis_run_id.eq(Some(redis_run_id)),
    ))
    .execute(c)
    .await)?;
    generation(conn).await
}

pub async fn generation(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| cache_state::table
        .find(1)
        .select(cache_state::generation)
        .first::<i64>(c)
        .await)?)
}
