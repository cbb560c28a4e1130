//! Platform connections. Every change bumps the owner's users.platforms_version in the same
//! transaction: the version of the cached list of their connections.

use diesel::prelude::{
    ExpressionMethods, Insertable, OptionalExtension, QueryDsl, Queryable, Selectable,
    SelectableHelper,
};
use diesel_async::RunQueryDsl;

use super::schema::{platform_connections as pc, users};
use super::{Conn, StoreError};
use crate::run;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pc)]
pub struct PlatformRow {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub instance_url: String,
    pub platform_type: String,
    pub account_id: String,
    pub account_username: String,
    pub display_name: String,
    pub access_token_enc: String,
    pub refresh_token_enc: Option<String>,
    pub description_limit: i32,
    pub is_default: bool,
    pub needs_reauth: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// How the tokens are sealed (crypto::TOKEN_SEAL_BOUND, or 1 for rows from before it).
    pub token_seal: i32,
}

#[derive(Insertable)]
#[diesel(table_name = pc)]
pub struct NewPlatform<'a> {
    pub user_id: i64,
    pub name: &'a str,
    pub instance_url: &'a str,
    pub platform_type: &'a str,
    pub account_id: &'a str,
    pub account_username: &'a str,
    pub display_name: &'a str,
    pub access_token_enc: &'a str,
    pub refresh_token_enc: Option<&'a str>,
    pub description_limit: i32,
    pub is_default: bool,
    pub needs_reauth: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub token_seal: i32,
}

pub async fn for_user(conn: &mut Conn, user_id: i64) -> Result<Vec<PlatformRow>, StoreError> {
    Ok(run!(conn, |c| pc::table
        .filter(pc::user_id.eq(user_id))
        .order(pc::id.asc())
        .select(PlatformRow::as_select())
        .load(c)
        .await)?)
}

/// The connection, only if it is that person's.
pub async fn owned(
    conn: &mut Conn,
    id: i64,
    user_id: i64,
) -> Result<Option<PlatformRow>, StoreError> {
    Ok(run!(conn, |c| pc::table
        .find(id)
        .filter(pc::user_id.eq(user_id))
        .select(PlatformRow::as_select())
        .first(c)
        .await
        .optional())?)
}

pub async fn find_account(
    conn: &mut Conn,
    user_id: i64,
    instance_url: &str,
    account_id: &str,
) -> Result<Option<PlatformRow>, StoreError> {
    Ok(run!(conn, |c| pc::table
        .filter(pc::user_id.eq(user_id))
        .filter(pc::instance_url.eq(instance_url))
        .filter(pc::account_id.eq(account_id))
        .select(PlatformRow::as_select())
        .first(c)
        .await
        .optional())?)
}

pub async fn insert(conn: &mut Conn, new: &NewPlatform<'_>) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| diesel::insert_into(pc::table)
        .values(new)
        .returning(pc::id)
        .get_result::<i64>(c)
        .await)?)
}

/// Stores a connection's sealed tokens, and how they are sealed.
pub async fn set_tokens(
    conn: &mut Conn,
    id: i64,
    access_token_enc: &str,
    refresh_token_enc: Option<&str>,
    token_seal: i32,
) -> Result<(), StoreError> {
    run!(conn, |c| diesel::update(pc::table.find(id))
        .set((
            pc::access_token_enc.eq(access_token_enc),
            pc::refresh_token_enc.eq(refresh_token_enc),
            pc::token_seal.eq(token_seal),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Connections whose tokens are still sealed the old way.
pub async fn with_token_seal(conn: &mut Conn, seal: i32) -> Result<Vec<PlatformRow>, StoreError> {
    Ok(run!(conn, |c| pc::table
        .filter(pc::token_seal.eq(seal))
        .order(pc::id.asc())
        .select(PlatformRow::as_select())
        .load(c)
        .await)?)
}

/// A fresh token for an existing connection: clears "needs a new token". The tokens themselves
/// are stored with `set_tokens`, sealed to the row.
pub async fn refresh_connection(
    conn: &mut Conn,
    id: i64,
    account_username: &str,
    display_name: &str,
    platform_type: &str,
    description_limit: i32,
    now: i64,
) -> Result<(), StoreError> {
    run!(conn, |c| diesel::update(pc::table.find(id))
        .set((
            pc::account_username.eq(account_username),
            pc::display_name.eq(display_name),
            pc::platform_type.eq(platform_type),
            pc::description_limit.eq(description_limit),
            pc::needs_reauth.eq(false),
            pc::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn rename(
    conn: &mut Conn,
    id: i64,
    user_id: i64,
    name: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::update(
        pc::table.find(id).filter(pc::user_id.eq(user_id))
    )
    .set((pc::name.eq(name), pc::updated_at.eq(now)))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

pub async fn set_default(conn: &mut Conn, id: i64, user_id: i64) -> Result<bool, StoreError> {
    let exists = owned(conn, id, user_id).await?.is_some();
    if !exists {
        return Ok(false);
    }
    run!(conn, |c| diesel::update(
        pc::table.filter(pc::user_id.eq(user_id))
    )
    .set(pc::is_default.eq(false))
    .execute(c)
    .await)?;
    run!(conn, |c| diesel::update(pc::table.find(id))
        .set(pc::is_default.eq(true))
        .execute(c)
        .await)?;
    Ok(true)
}

pub async fn set_needs_reauth(conn: &mut Conn, id: i64, needs: bool) -> Result<(), StoreError> {
    run!(conn, |c| diesel::update(pc::table.find(id))
        .set(pc::needs_reauth.eq(needs))
        .execute(c)
        .await)?;
    Ok(())
}

pub async fn delete(conn: &mut Conn, id: i64, user_id: i64) -> Result<bool, StoreError> {
    let n = run!(conn, |c| diesel::delete(
        pc::table.find(id).filter(pc::user_id.eq(user_id))
    )
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Makes the oldest remaining connection the default when none is (after a delete).
pub async fn ensure_default(conn: &mut Conn, user_id: i64) -> Result<(), StoreError> {
    let rows = for_user(conn, user_id).await?;
    if rows.iter().any(|r| r.is_default) {
        return Ok(());
    }
    if let Some(first) = <[PlatformRow]>::first(&rows) {
        run!(conn, |c| diesel::update(pc::table.find(first.id))
            .set(pc::is_default.eq(true))
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// Bumps and returns the person's platforms version (inside the write transaction).
pub async fn bump_version(conn: &mut Conn, user_id: i64) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| diesel::update(users::table.find(user_id))
        .set(users::platforms_version.eq(users::platforms_version + 1))
        .returning(users::platforms_version)
        .get_result::<i64>(c)
        .await)?)
}

pub async fn version(conn: &mut Conn, user_id: i64) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| users::table
        .find(user_id)
        .select(users::platforms_version)
        .first::<i64>(c)
        .await)?)
}

/// Connections across everyone (the admin overview).
pub async fn count(conn: &mut Conn) -> Result<i64, StoreError> {
    Ok(run!(conn, |c| pc::table.count().get_result(c).await)?)
}
