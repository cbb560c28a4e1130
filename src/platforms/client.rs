//! The Mastodon client API, as Mastodon and Pixelfed serve it: instance info, the signed-in
//! account, OAuth app registration and the code exchange.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::guard::{self, AddressPolicy, GuardedResolver};
use crate::config::Secret;
use crate::domain::{InstanceUrl, PlatformType};

const MAX_BODY: usize = 1 << 20;
const MAX_ACCOUNT_ID: usize = 64;
const MAX_ACCT: usize = 300;
const MAX_DISPLAY_NAME: usize = 100;

/// An identifier from an instance that is stored as it is: 1 to 512 visible ASCII characters.
fn is_plain_token(text: &str) -> bool {
    (1..=512).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic())
}

/// Text from an instance, fit to show: no control or bidirectional-control characters, trimmed,
/// at most `max` characters.
pub(crate) fn display_text(text: &str, max: usize) -> String {
    text.chars()
        .filter(|&c| !crate::domain::is_hidden_control(c))
        .collect::<String>()
        .trim()
        .chars()
        .take(max)
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("the instance refused the access token")]
    InvalidToken,
    #[error("could not reach the instance: {0}")]
    Unreachable(String),
    #[error("the server does not answer like a Mastodon or Pixelfed instance")]
    NotMastodonApi,
    #[error("the address is private, loopback or link-local")]
    PrivateAddress,
    #[error("the instance is rate limiting us")]
    RateLimited { retry_after: Option<u64> },
    #[error("the instance answered with HTTP {status}")]
    Instance { status: u16 },
    #[error("the instance refused the authorization: {0}")]
    OAuthRejected(String),
}

#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    pub acct: String,
    pub display_name: String,
}

#[derive(Clone, Debug)]
pub struct InstanceInfo {
    pub platform_type: PlatformType,
    pub description_limit: Option<i32>,
}

#[derive(Deserialize)]
pub struct RegisteredApp {
    pub client_id: String,
    pub client_secret: String,
}

pub struct Tokens {
    pub access_token: Secret<String>,
    pub refresh_token: Option<Secret<String>>,
}

#[derive(Clone)]
pub struct InstanceClient {
    pub(crate) http: reqwest::Client,
    policy: Arc<AddressPolicy>,
}

impl InstanceClient {
    pub fn new(policy: AddressPolicy, timeout: Duration) -> Result<InstanceClient, reqwest::Error> {
        let policy = Arc::new(policy);
        // No proxy from the environment: a proxy resolves the target itself, and the guard in our
        // resolver would never see the address (HTTPS_PROXY would be a way around it).
        let http = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .redirect(guard::redirect_policy(policy.clone()))
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // Idle connections kept per instance: enough for a worker's calls at once; a worker
            // watching many accounts of one instance does not keep hundreds of them.
            .pool_max_idle_per_host(32)
            .timeout(timeout)
            .user_agent(concat!("fedialt/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(InstanceClient { http, policy })
    }

    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, PlatformError> {
        let parsed = url::Url::parse(url).map_err(|_| PlatformError::NotMastodonApi)?;
        self.policy
            .check_url(&parsed)
            .map_err(|_| PlatformError::PrivateAddress)?;
        let response = request.send().await.map_err(classify)?;
        match response.status().as_u16() {
            200..=299 => Ok(response),
            401 | 403 => Err(PlatformError::InvalidToken),
            404 | 405 | 410 => Err(PlatformError::NotMastodonApi),
            429 => Err(PlatformError::RateLimited {
                retry_after: response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok()),
            }),
            status => Err(PlatformError::Instance { status }),
        }
    }

    async fn json<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, PlatformError> {
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY {
                return Err(PlatformError::NotMastodonApi);
            }
        }
        serde_json::from_slice(&body).map_err(|_| PlatformError::NotMastodonApi)
    }

    /// The platform type (Pixelfed says so in /api/v1/instance's version) and the description
    /// limit (/api/v2/instance, where the instance has it). A hint, not a check: an instance that
    /// answers these oddly is taken for Mastodon with the default limit (verify_credentials is what
    /// proves it speaks the API); only network and address-guard failures are errors here.
    pub async fn instance_info(
        &self,
        instance: &InstanceUrl,
    ) -> Result<InstanceInfo, PlatformError> {
        #[derive(Deserialize)]
        struct V1 {
            #[serde(default)]
            version: String,
        }
        let tolerable = |e: &PlatformError| {
            matches!(
                e,
                PlatformError::NotMastodonApi
                    | PlatformError::InvalidToken
                    | PlatformError::Instance { .. }
            )
        };
        let url = instance.join("/api/v1/instance");
        let version = match self.send(self.http.get(&url), &url).await {
            Ok(response) => match Self::json::<V1>(response).await {
                Ok(v1) => v1.version,
                Err(e) if tolerable(&e) => String::new(),
                Err(e) => return Err(e),
            },
            Err(e) if tolerable(&e) => String::new(),
            Err(e) => return Err(e),
        };
        let platform_type = if version.to_lowercase().contains("pixelfed") {
            PlatformType::Pixelfed
        } else {
            PlatformType::Mastodon
        };
        let url = instance.join("/api/v2/instance");
        let description_limit = match self.send(self.http.get(&url), &url).await {
            Ok(response) => Self::json::<serde_json::Value>(response)
                .await
                .ok()
                .and_then(|v| {
                    v.pointer("/configuration/media_attachments/description_limit")?
                        .as_i64()
                })
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n > 0),
            Err(e) if tolerable(&e) || matches!(e, PlatformError::RateLimited { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok(InstanceInfo {
            platform_type,
            description_limit,
        })
    }

    pub async fn verify_credentials(
        &self,
        instance: &InstanceUrl,
        token: &Secret<String>,
    ) -> Result<Account, PlatformError> {
        #[derive(Deserialize)]
        struct Raw {
            id: serde_json::Value,
            acct: Option<String>,
            username: String,
            #[serde(default)]
            display_name: Option<String>,
        }
        let url = instance.join("/api/v1/accounts/verify_credentials");
        let raw: Raw = Self::json(
            self.send(self.http.get(&url).bearer_auth(token.expose()), &url)
                .await?,
        )
        .await?;
        let id = match raw.id {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(PlatformError::NotMastodonApi),
        };
        if !is_plain_token(&id) || id.len() > MAX_ACCOUNT_ID {
            return Err(PlatformError::NotMastodonApi);
        }
        // What the instance says of itself is shown on our pages: cleaned of control and
        // direction-changing characters, and cut to a sane length, before it is stored.
        let acct = display_text(&raw.acct.unwrap_or_else(|| raw.username.clone()), MAX_ACCT);
        let display_name = raw
            .display_name
            .map(|d| display_text(&d, MAX_DISPLAY_NAME))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| display_text(&raw.username, MAX_DISPLAY_NAME));
        Ok(Account {
            id,
            acct,
            display_name,
        })
    }

    pub async fn register_app(
        &self,
        instance: &InstanceUrl,
        redirect_uri: &str,
        scopes: &str,
        website: &str,
    ) -> Result<RegisteredApp, PlatformError> {
        let url = instance.join("/api/v1/apps");
        let request = self.http.post(&url).form(&[
            ("client_name", "fedialt"),
            ("redirect_uris", redirect_uri),
            ("scopes", scopes),
            ("website", website),
        ]);
        let app: RegisteredApp = Self::json(self.send(request, &url).await?).await?;
        // Stored as it comes: it must be a plain token (PostgreSQL refuses a NUL in text).
        if !is_plain_token(&app.client_id) || !is_plain_token(&app.client_secret) {
            return Err(PlatformError::NotMastodonApi);
        }
        Ok(app)
    }

    pub async fn exchange_code(
        &self,
        instance: &InstanceUrl,
        app: &RegisteredApp,
        code: &str,
        redirect_uri: &str,
        scopes: &str,
    ) -> Result<Tokens, PlatformError> {
        #[derive(Deserialize)]
        struct Raw {
            access_token: String,
            #[serde(default)]
            refresh_token: Option<String>,
        }
        let url = instance.join("/oauth/token");
        let request = self.http.post(&url).form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", app.client_id.as_str()),
            ("client_secret", app.client_secret.as_str()),
            ("redirect_uri", redirect_uri),
            ("scope", scopes),
        ]);
        let raw: Raw = match self.send(request, &url).await {
            Ok(response) => Self::json(response).await?,
            Err(PlatformError::InvalidToken) | Err(PlatformError::Instance { status: 400 }) => {
                return Err(PlatformError::OAuthRejected(
                    "the authorization code was not accepted".into(),
                ))
            }
            Err(other) => return Err(other),
        };
        Ok(Tokens {
            access_token: Secret::new(raw.access_token),
            refresh_token: raw.refresh_token.map(Secret::new),
        })
    }
}

pub(crate) fn classify(error: reqwest::Error) -> PlatformError {
    if guard::is_blocked(&error) {
        return PlatformError::PrivateAddress;
    }
    if error.is_timeout() {
        return PlatformError::Unreachable("it did not answer in time".into());
    }
    if error.is_connect() {
        return PlatformError::Unreachable("the connection failed (is the address right?)".into());
    }
    if error.is_redirect() {
        return PlatformError::Unreachable("too many redirects".into());
    }
    PlatformError::Unreachable("the request failed".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn instance_text_is_cleaned_and_cut() {
        assert_eq!(super::display_text(" Al\u{202e}ice\u{0}\n ", 100), "Alice");
        assert_eq!(
            super::display_text(&"é".repeat(500), 100).chars().count(),
            100
        );
    }

    #[test]
    fn identifiers_stored_as_they_come_are_plain() {
        assert!(super::is_plain_token("109123"));
        assert!(super::is_plain_token("AbC-_.~123"));
        for bad in ["", "1\u{0}2", "a b", "é", &"x".repeat(513)] {
            assert!(!super::is_plain_token(bad), "{bad:?}");
        }
    }
}
