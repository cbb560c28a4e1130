//! The OAuth app fedialt registered on each instance (one per redirect URI and scope set).

use diesel::prelude::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::RunQueryDsl;

use super::schema::oauth_apps;
use super::{now, Conn, StoreError};
use crate::run;

/// (client_id, client_secret_enc) if registered.
pub async fn find(
    conn: &mut Conn,
    instance_url: &str,
    redirect_uri: &str,
    scopes: &str,
) -> Result<Option<(String, String)>, StoreError> {
    Ok(run!(conn, |c| oauth_apps::table
        .filter(oauth_apps::instance_url.eq(instance_url))
        .filter(oauth_apps::redirect_uri.eq(redirect_uri))
        .filter(oauth_apps::scopes.eq(scopes))
        .select((oauth_apps::client_id, oauth_apps::client_secret_enc))
        .first::<(String, String)>(c)
        .await
        .optional())?)
}

pub async fn save(
    conn: &mut Conn,
    instance_url: &str,
    redirect_uri: &str,
    scopes: &str,
    client_id: &str,
    client_secret_enc: &str,
) -> Result<(), StoreError> {
    run!(conn, |c| diesel::insert_into(oauth_apps::table)
        .values((
            oauth_apps::instance_url.eq(instance_url),
            oauth_apps::redirect_uri.eq(redirect_uri),
            oauth_apps::scopes.eq(scopes),
            oauth_apps::client_id.eq(client_id),
            oauth_apps::client_secret_enc.eq(client_secret_enc),
            oauth_apps::created_at.eq(now()),
        ))
        .on_conflict((
            oauth_apps::instance_url,
            oauth_apps::redirect_uri,
            oauth_apps::scopes
        ))
        .do_update()
        .set((
            oauth_apps::client_id.eq(client_id),
            oauth_apps::client_secret_enc.eq(client_secret_enc),
        ))
        .execute(c)
        .await)?;
    Ok(())
}
