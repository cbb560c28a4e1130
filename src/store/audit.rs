//! The audit log: what admins did, newest first.

use diesel::prelude::{
    ExpressionMethods, Insertable, QueryDsl, Queryable, Selectable, SelectableHelper,
};
use diesel_async::RunQueryDsl;

use super::schema::audit_log as al;
use super::{now, Conn, StoreError};
use crate::run;

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize)]
#[diesel(table_name = al)]
pub struct AuditRow {
    pub id: i64,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub created_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = al)]
struct NewAudit<'a> {
    actor_id: Option<i64>,
    actor: &'a str,
    action: &'a str,
    target: &'a str,
    detail: &'a str,
    created_at: i64,
}

/// Records an action (in the caller's transaction when there is one).
pub async fn record(
    conn: &mut Conn,
    actor: (i64, &str),
    action: &str,
    target: &str,
    detail: &str,
) -> Result<(), StoreError> {
    let new = NewAudit {
        actor_id: Some(actor.0),
        actor: actor.1,
        action,
        target,
        detail,
        created_at: now(),
    };
    run!(conn, |c| diesel::insert_into(al::table)
        .values(&new)
        .execute(c)
        .await)?;
    Ok(())
}

/// A page of the log, newest first.
pub async fn page(conn: &mut Conn, limit: i64, offset: i64) -> Result<Vec<AuditRow>, StoreError> {
    Ok(run!(conn, |c| al::table
        .order((al::created_at.desc(), al::id.desc()))
        .limit(limit)
        .offset(offset)
        .select(AuditRow::as_select())
        .load(c)
        .await)?)
}

pub async fn count(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| al::table.count().get_result(c).await)?)
}
