//! The users table.

use diesel::prelude::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, Selectable,
    SelectableHelper,
};
use diesel_async::RunQueryDsl;

use super::schema::users;
use super::{now, Backend, Conn, StoreError};
use crate::run;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    pub role: String,
    pub active: bool,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    pub platforms_version: i64,
    pub credentials_version: i64,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub active: bool,
    pub created_at: i64,
}

pub async fn insert(conn: &mut Conn, new: &NewUser<'_>) -> Result<i64, StoreError> {
    let id = run!(conn, |c| diesel::insert_into(users::table)
        .values(new)
        .returning(users::id)
        .get_result::<i64>(c)
        .await)?;
    Ok(id)
}

pub async fn by_username(conn: &mut Conn, username: &str) -> Result<Option<UserRow>, StoreError> {
    Ok(run!(conn, |c| users::table
        .filter(users::username.eq(username))
        .select(UserRow::as_select())
        .first(c)
        .await
        .optional())?)
}

pub async fn by_id(conn: &mut Conn, id: i64) -> Result<Option<UserRow>, StoreError> {
    Ok(run!(conn, |c| users::table
        .find(id)
        .select(UserRow::as_select())
        .first(c)
        .await
        .optional())?)
}

pub async fn count(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| users::table
        .count()
        .get_result::<i64>(c)
        .await)?)
}

pub async fn list(conn: &mut Conn) -> Result<Vec<UserRow>, StoreError> {
    Ok(run!(conn, |c| users::table
        .order(users::username.asc())
        .select(UserRow::as_select())
        .load(c)
        .await)?)
}

pub async fn record_login(conn: &mut Conn, id: i64) -> Result<(), StoreError> {
    run!(conn, |c| diesel::update(users::table.find(id))
        .set(users::last_login_at.eq(Some(now())))
        .execute(c)
        .await)?;
    Ok(())
}

/// A new password: also bumps the credentials version, so a sign-in that checked the old one
/// can no longer create a session (see `still_signed_in_as`). Only if the credentials are still
/// at `checked` (the version whose password the caller verified): of two changes racing with the
/// same old password, one wins and the other is told. False when that check failed.
pub async fn set_password_hash(
    conn: &mut Conn,
    id: i64,
    hash: &str,
    checked: i64,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(
        users::table
            .find(id)
            .filter(users::credentials_version.eq(checked))
    )
    .set((
        users::password_hash.eq(hash),
        users::credentials_version.eq(users::credentials_version + 1),
    ))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Inside the transaction that creates a session: whether the person is still active with the
/// credentials their sign-in checked. It is an UPDATE that changes nothing, so that on PostgreSQL
/// it locks the row until the session is in (a password change waits, then sees the session and
/// ends it); SQLite's write transaction serialises the two anyway.
pub async fn still_signed_in_as(
    conn: &mut Conn,
    id: i64,
    credentials_version: i64,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(
        users::table
            .find(id)
            .filter(users::credentials_version.eq(credentials_version))
            .filter(users::active.eq(true))
    )
    .set(users::credentials_version.eq(users::credentials_version))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// A change to a person's access: their role, or whether they may sign in.
#[derive(Clone, Copy, Debug)]
pub enum Access<'a> {
    Role(&'a str),
    Active(bool),
}

#[derive(Debug)]
pub enum AccessChange {
    /// Changed; the person as they were before.
    Done(UserRow),
    /// Already so: nothing written.
    Unchanged(UserRow),
    /// Refused: they are the last active admin.
    LastAdmin,
    Gone,
}

/// Changes one thing about a person's access, in the caller's write transaction, keeping at
/// least one active admin. PostgreSQL: under a transaction lock that every such change takes, so
/// two admins demoting each other at once cannot both win and a change never works from a stale
/// read; SQLite: the write transaction runs alone. Bumps the credentials version, so a sign-in in
/// flight with the old role or state cannot create a session.
pub async fn change_access(
    conn: &mut Conn,
    id: i64,
    access: Access<'_>,
) -> Result<AccessChange, StoreError> {
    if conn.backend() == Backend::Postgres {
        run!(conn, |c| diesel::sql_query(
            "SELECT pg_advisory_xact_lock(7061745103) IS NULL AS locked"
        )
        .execute(c)
        .await)?;
    }
    let Some(before) = by_id(conn, id).await? else {
        return Ok(AccessChange::Gone);
    };
    let (role, active) = match access {
        Access::Role(role) => (role, before.active),
        Access::Active(active) => (before.role.as_str(), active),
    };
    if role == before.role && active == before.active {
        return Ok(AccessChange::Unchanged(before));
    }
    let was_admin = before.active && before.role == "admin";
    if was_admin && !(active && role == "admin") {
        let others = run!(conn, |c| users::table
            .filter(users::role.eq("admin"))
            .filter(users::active.eq(true))
            .filter(users::id.ne(id))
            .count()
            .get_result::<i64>(c)
            .await)?;
        if others == 0 {
            return Ok(AccessChange::LastAdmin);
        }
    }
    let role = role.to_owned();
    run!(conn, |c| diesel::update(users::table.find(id))
        .set((
            users::role.eq(&role),
            users::active.eq(active),
            users::credentials_version.eq(users::credentials_version + 1),
        ))
        .execute(c)
        .await)?;
    Ok(AccessChange::Done(before))
}

/// A password an admin set: bumps the credentials version (sign-ins in flight fail).
pub async fn set_password_by_admin(
    conn: &mut Conn,
    id: i64,
    hash: &str,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(hash),
            users::credentials_version.eq(users::credentials_version + 1),
        ))
        .execute(c)
        .await)?;
    Ok(n == 1)
}
