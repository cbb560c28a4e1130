//! Adding a connection, by token or at the end of OAuth: verified against the instance first, then
//! saved with its tokens encrypted. The same account on the same instance updates the existing
//! connection (new token, "needs a new token" cleared) instead of adding a duplicate.

use super::client::{InstanceClient, PlatformError};
use crate::config::Secret;
use crate::crypto::{self, CryptoError, SecretBox};
use crate::domain::{InstanceUrl, PlatformType};
use crate::services::platforms::PlatformManager;
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
    #[error("the session could not hold the new connection: {0}")]
    Session(String),
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
    let secrets = secrets.clone();
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
        .unwrap_or_else(|| default_name(&account.display_name, &host));
    let handle = format!(
        "@{}@{}",
        account.acct.split('@').next().unwrap_or(""),
        authority
    );
    let (platform_id, created) = manager
        .write(crate::domain::UserId(user_id), Vec::new(), move |conn| {
            Box::pin(async move {
                let now = store::now();
                if let Some(existing) =
                    store::platforms::find_account(conn, user_id, &instance_url, &account.id)
                        .await?
                {
                    store::platforms::refresh_connection(
                        conn,
                        existing.id,
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
                    store_tokens(conn, &secrets, existing.id, user_id, &new).await?;
                    return Ok((existing.id, false));
                }
                let first = store::platforms::for_user(conn, user_id).await?.is_empty();
                // The tokens are sealed to the row, so the row comes first (in this transaction).
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
                        access_token_enc: "",
                        refresh_token_enc: None,
                        description_limit,
                        is_default: first,
                        needs_reauth: false,
                        created_at: now,
                        updated_at: now,
                        token_seal: crypto::TOKEN_SEAL_BOUND,
                    },
                )
                .await?;
                store_tokens(conn, &secrets, id, user_id, &new).await?;
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

/// "Display name on host", within a connection name's 60 characters (the display name gives way).
fn default_name(display_name: &str, host: &str) -> String {
    let suffix = format!(" on {host}");
    let room = 60usize.saturating_sub(suffix.chars().count()).max(1);
    let mut name: String = display_name.chars().take(room).collect();
    name.push_str(&suffix);
    name.chars().take(60).collect()
}

/// Seals a connection's tokens to its row and owner, and stores them.
async fn store_tokens(
    conn: &mut store::Conn,
    secrets: &SecretBox,
    platform_id: i64,
    user_id: i64,
    new: &NewConnection,
) -> Result<(), StoreError> {
    let seal = |purpose: &str, token: &Secret<String>| {
        secrets
            .seal(
                &crypto::token_binding(purpose, platform_id, user_id),
                token.expose(),
            )
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    };
    let access = seal(crypto::ACCESS_TOKEN, &new.access_token)?;
    let refresh = match &new.refresh_token {
        Some(t) => Some(seal(crypto::REFRESH_TOKEN, t)?),
        None => None,
    };
    store::platforms::set_tokens(
        conn,
        platform_id,
        &access,
        refresh.as_deref(),
        crypto::TOKEN_SEAL_BOUND,
    )
    .await
}

/// Re-seals tokens stored before they were bound to their row and owner (token_seal 1). Runs at
/// start, once the key is known; a row whose token does not open (another key) is left as it is
/// and reported.
pub async fn reseal_legacy_tokens(
    db: &store::Db,
    secrets: &SecretBox,
) -> Result<usize, StoreError> {
    let mut conn = db.conn().await?;
    let rows = store::platforms::with_token_seal(&mut conn, 1).await?;
    let mut done = 0;
    for row in rows {
        let reseal = |purpose: &str, sealed: &str| -> Result<String, CryptoError> {
            let plain = secrets.open(purpose, sealed)?;
            secrets.seal(
                &crypto::token_binding(purpose, row.id, row.user_id),
                plain.expose(),
            )
        };
        let access = reseal(crypto::ACCESS_TOKEN, &row.access_token_enc);
        let refresh = row
            .refresh_token_enc
            .as_deref()
            .map(|r| reseal(crypto::REFRESH_TOKEN, r))
            .transpose();
        match (access, refresh) {
            (Ok(access), Ok(refresh)) => {
                store::platforms::set_tokens(
                    &mut conn,
                    row.id,
                    &access,
                    refresh.as_deref(),
                    crypto::TOKEN_SEAL_BOUND,
                )
                .await?;
                done += 1;
            }
            _ => tracing::warn!(
                platform.id = row.id,
                "a stored token could not be opened to re-seal it (was FEDIALT_SECRET_KEY changed?)"
            ),
        }
    }
    if done > 0 {
        tracing::info!(
            count = done,
            "re-sealed stored tokens to their connection and owner"
        );
    }
    Ok(done)
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

/// Why a stored connection cannot be used to call its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Its instance address does not parse.
    Address,
    /// Its token does not open with this process's key.
    Token,
}

impl Unusable {
    /// In words for people.
    pub fn words(self) -> &'static str {
        match self {
            Unusable::Address => "the connection's instance address is not valid",
            Unusable::Token => {
                "the connection's token could not be read (was FEDIALT_SECRET_KEY changed?); \
                 connect the account again"
            }
        }
    }
}

/// What a call to a stored connection's instance needs: its address and its opened token.
pub fn credentials(
    secrets: &SecretBox,
    row: &store::platforms::PlatformRow,
) -> Result<(InstanceUrl, Secret<String>), Unusable> {
    let instance =
        InstanceUrl::parse(&row.instance_url, |_| true).map_err(|_| Unusable::Address)?;
    let token = secrets
        .open(
            &crypto::token_binding(crypto::ACCESS_TOKEN, row.id, row.user_id),
            &row.access_token_enc,
        )
        .map_err(|_| Unusable::Token)?;
    Ok((instance, token))
}
