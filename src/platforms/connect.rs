//! Adding a connection, by token or at the end of OAuth: verified against the instance first, then
//! saved with its tokens encrypted. The same account on the same instance updates the existing
//! connection (new token, "needs a new token" cleared) instead of adding a duplicate.

use super::client::{InstanceClient, PlatformError};
use crate::cache::platforms::PlatformManager;
use crate::config::Secret;
use crate::crypto::{self, CryptoError, SecretBox};
use crate::domain::{InstanceUrl, PlatformType};
use crate::store::{self, platforms::NewPlatform, StoreError};

pub struct NewConnection {
    pub instance: InstanceUrl,
    pub access_token: Secret<String>,
    pub refresh_token: Option<Secret<String>>,
    pub name: Option<String>,
    pub platform_type: Option<PlatformType>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

pub struct Connected {
    pub platform_id: i64,
    pub created: bool,
    pub handle: String,
}

pub async fn connect(
    client: &InstanceClient,
    secrets: &SecretBox,
    manager: &PlatformManager,
    user_id: i64,
    new: NewConnection,
) -> Result<Connected, ConnectError> {
    // The token is the real check (a wrong one, or a server that is not an instance, stops here).
    let account = client
        .verify_credentials(&new.instance, &new.access_token)
        .await?;
    let info = client.instance_info(&new.instance).await?;
    let platform_type = new.platform_type.unwrap_or(info.platform_type);
    let description_limit = info
        .description_limit
        .unwrap_or_else(|| platform_type.default_description_limit());
    let access = secrets.seal(crypto::ACCESS_TOKEN, new.access_token.expose())?;
    let refresh = match &new.refresh_token {
        Some(t) => Some(secrets.seal(crypto::REFRESH_TOKEN, t.expose())?),
        None => None,
    };
    let instance_url = new.instance.as_str().to_owned();
    let host = new.instance.host().to_owned();
    let authority = new
        .instance
        .as_str()
        .split("://")
        .nth(1)
        .unwrap_or(&host)
        .to_owned();
    let name = new
        .name
        .clone()
        .unwrap_or_else(|| format!("{} on {}", account.display_name, host));
    let handle = format!(
        "@{}@{}",
        account.acct.split('@').next().unwrap_or(""),
        authority
    );
    let (platform_id, created) = manager
        .write(user_id, Vec::new(), move |conn| {
            Box::pin(async move {
                let now = store::now();
                if let Some(existing) =
                    store::platforms::find_account(conn, user_id, &instance_url, &account.id)
                        .await?
                {
                    store::platforms::refresh_connection(
                        conn,
                        existing.id,
                        &access,
                        refresh.as_deref(),
                        &account.acct,
                        &account.display_name,
                        platform_type.as_str(),
                        description_limit,
                        now,
                    )
                    .await?;
                    if let Some(name) = &new.name {
                        store::platforms::rename(conn, existing.id, user_id, name, now).await?;
                    }
                    return Ok((existing.id, false));
                }
                let first = store::platforms::for_user(conn, user_id).await?.is_empty();
                let id = store::platforms::insert(
                    conn,
                    &NewPlatform {
                        user_id,
                        name: &name,
                        instance_url: &instance_url,
                        platform_type: platform_type.as_str(),
                        account_id: &account.id,
                        account_username: &account.acct,
                        display_name: &account.display_name,
                        access_token_enc: &access,
                        refresh_token_enc: refresh.as_deref(),
                        description_limit,
                        is_default: first,
                        needs_reauth: false,
                        created_at: now,
                        updated_at: now,
                    },
                )
                .await?;
                Ok((id, true))
            })
        })
        .await?;
    Ok(Connected {
        platform_id,
        created,
        handle,
    })
}

/// What to tell the person, naming what to fix.
pub fn explain(error: &PlatformError) -> String {
    match error {
        PlatformError::InvalidToken => "The instance did not accept this access token. Check that you copied the whole token, \
             that it has not been revoked, and that it has the read and write scopes."
            .into(),
        PlatformError::Unreachable(why) => format!(
            "fedialt could not reach that instance: {why}. Check the address (for example mastodon.social)."
        ),
        PlatformError::NotMastodonApi => "That server does not answer like a Mastodon or Pixelfed instance. \
             Check the address: it should be the instance's own address, such as mastodon.social."
            .into(),
        PlatformError::PrivateAddress => "That address points to a private, loopback or link-local network, which fedialt \
             does not connect to. Use the instance's public address (an administrator can allow private networks with \
             FEDIALT_ALLOW_PRIVATE_NETWORK)."
            .into(),
        PlatformError::RateLimited { retry_after } => match retry_after {
            Some(s) => format!("The instance is limiting requests right now; try again in {s} seconds."),
            None => "The instance is limiting requests right now; try again in a few minutes.".into(),
        },
        PlatformError::Instance { status } => format!(
            "The instance answered with an error (HTTP {status}). Try again later, or check the address."
        ),
        PlatformError::OAuthRejected(why) => format!("The instance did not complete the sign-in: {why}. Please try again."),
    }
}
