//! The cache outbox: invalidations written in the same transaction as the change they belong to,
//! removed once Redis has them. Every instance drains it on a short timer.

use diesel::prelude::{
    ExpressionMethods, Insertable, QueryDsl, Queryable, Selectable, SelectableHelper,
};
use diesel_async::RunQueryDsl;

use super::schema::cache_outbox;
use super::{now, Conn, StoreError};
use crate::cache::keys::Key;
use crate::run;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cache_outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub min_version: i64,
    pub created_at: i64,
    pub kind: String,
    pub ident: String,
}

impl OutboxRow {
    /// The key the row is about; None for a kind this build does not know.
    pub fn key(&self) -> Option<Key> {
        Key::from_parts(&self.kind, &self.ident)
    }
}

#[derive(Insertable)]
#[diesel(table_name = cache_outbox)]
struct NewOutbox<'a> {
    kind: &'a str,
    ident: &'a str,
    min_version: i64,
    created_at: i64,
}

/// Records that Redis must not serve `key` below `min_version`; returns the row id.
pub async fn push(conn: &mut Conn, key: &Key, min_version: i64) -> Result<i64, StoreError> {
    let row = NewOutbox {
        kind: key.kind().label(),
        ident: key.ident(),
        min_version,
        created_at: now(),
    };
    Ok(run!(conn, |c| diesel::insert_into(cache_outbox::table)
        .values(&row)
        .returning(cache_outbox::id)
        .get_result::<i64>(c)
        .await)?)
}

pub async fn oldest(conn: &mut Conn, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    Ok(run!(conn, |c| cache_outbox::table
        .order(cache_outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .load(c)
        .await)?)
}

pub async fn remove(conn: &mut Conn, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    run!(conn, |c| diesel::delete(
        cache_outbox::table.filter(cache_outbox::id.eq_any(ids))
    )
    .execute(c)
    .await)?;
    Ok(())
}

pub async fn count(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| cache_outbox::table
        .count()
        .get_result::<i64>(c)
        .await)?)
}
