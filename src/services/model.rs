//! The vision model admins choose (backend, address, model, timeout, concurrency, API key), saved
//! in admin_settings and served like every cached value (`Versioned`, Kind::Admin): saved values
//! win over the environment, which gives the first ones. The API key is sealed with the secret
//! box that seals access tokens: the database and Redis hold only the sealed text, and no page,
//! log line or audit row shows it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::versioned::{Put, Versioned, Written};
use crate::cache::keys::{self, Key};
use crate::cache::{Cache, Kind};
use crate::config::{CaptionBackend, CaptionConfig};
use crate::crypto::SecretBox;
use crate::store::{self, Conn, Db, StoreError};

pub const NAME: &str = "model";
/// The purpose the saved API key is sealed for.
pub const API_KEY: &str = "admin model api key";

/// What admins saved (the key sealed).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedModel {
    pub backend: String,
    pub base_url: String,
    pub model: String,
    pub timeout_secs: u64,
    pub concurrency: u32,
    pub api_key_sealed: Option<String>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct CachedModel {
    version: i64,
    saved: Option<SavedModel>,
}

async fn read_model(conn: &mut Conn) -> Result<(i64, CachedModel), StoreError> {
    Ok(match store::admin_settings::get(conn, NAME).await? {
        Some((value, version)) => (
            version,
            CachedModel {
                version,
                saved: serde_json::from_str(&value).ok(),
            },
        ),
        None => (
            0,
            CachedModel {
                version: 0,
                saved: None,
            },
        ),
    })
}

/// The model as it applies now, and the version it came from (0: the environment's).
#[derive(Clone)]
pub struct Effective {
    pub version: i64,
    pub config: CaptionConfig,
    pub saved: Option<SavedModel>,
}

impl Effective {
    pub fn has_key(&self) -> bool {
        self.config.api_key.is_some()
    }

    pub fn backend_name(&self) -> &'static str {
        match self.config.backend {
            CaptionBackend::Ollama => "ollama",
            CaptionBackend::OpenAi => "openai",
        }
    }
}

/// A model admins want, checked (the key in plain text only on its way to being sealed).
pub struct NewModel {
    pub backend: CaptionBackend,
    pub base_url: url::Url,
    pub model: String,
    pub timeout_secs: u64,
    pub concurrency: u32,
    /// A new key; None keeps the saved one.
    pub api_key: Option<String>,
    pub clear_api_key: bool,
}

#[derive(Clone)]
pub struct ModelService {
    cached: Versioned<CachedModel>,
    env: CaptionConfig,
    secrets: SecretBox,
}

impl ModelService {
    pub fn new(db: Db, cache: Cache, env: CaptionConfig, secrets: SecretBox) -> ModelService {
        ModelService {
            cached: Versioned::new(db, cache, Kind::Admin),
            env,
            secrets,
        }
    }

    fn key() -> Key {
        Key::admin(NAME)
    }

    /// The model that applies: what admins saved, else the environment's.
    pub async fn effective(&self) -> Result<Effective, StoreError> {
        let cached = self
            .cached
            .read(&Self::key(), keys::ROW_TTL, |conn| {
                Box::pin(read_model(conn))
            })
            .await?;
        Ok(self.apply(cached.version, cached.saved))
    }

    fn apply(&self, version: i64, saved: Option<SavedModel>) -> Effective {
        let Some(model) = saved.clone() else {
            return Effective {
                version: 0,
                config: self.env.clone(),
                saved: None,
            };
        };
        let config = CaptionConfig {
            backend: if model.backend == "openai" {
                CaptionBackend::OpenAi
            } else {
                CaptionBackend::Ollama
            },
            base_url: url::Url::parse(&model.base_url)
                .unwrap_or_else(|_| self.env.base_url.clone()),
            model: model.model.clone(),
            api_key: model.api_key_sealed.as_deref().and_then(|sealed| {
                let opened = self.secrets.open(API_KEY, sealed).ok();
                if opened.is_none() {
                    tracing::warn!(
                        "the saved model API key cannot be opened (was FEDIALT_SECRET_KEY \
                         changed?); calls go without a key until an admin saves one again"
                    );
                }
                opened
            }),
            timeout: Duration::from_secs(model.timeout_secs.max(1)),
            concurrency: model.concurrency.max(1),
        };
        Effective {
            version,
            config,
            saved,
        }
    }

    /// Saves the model (the database with an outbox row, then Redis) with its audit row.
    pub async fn save(&self, new: NewModel, actor: (i64, String)) -> Result<(), StoreError> {
        let current = self.effective().await?;
        // The key: a new one sealed, the saved one kept, or none.
        let (sealed, key_words) =
            match (&new.api_key, new.clear_api_key) {
                (_, true) => (None, "removed"),
                (Some(key), false) => (
                    Some(self.secrets.seal(API_KEY, key).map_err(|_| {
                        StoreError::Unavailable("could not seal the API key".into())
                    })?),
                    "new key set",
                ),
                (None, false) => match (current.saved, &self.env.api_key) {
                    (Some(saved), _) => match saved.api_key_sealed {
                        Some(kept) => (Some(kept), "kept"),
                        None => (None, "none"),
                    },
                    // The first save keeps the environment's key (the page said one is set).
                    (None, Some(env_key)) => (
                        Some(self.secrets.seal(API_KEY, env_key.expose()).map_err(|_| {
                            StoreError::Unavailable("could not seal the API key".into())
                        })?),
                        "kept (from the environment)",
                    ),
                    (None, None) => (None, "none"),
                },
            };
        let saved = SavedModel {
            backend: match new.backend {
                CaptionBackend::Ollama => "ollama".into(),
                CaptionBackend::OpenAi => "openai".into(),
            },
            base_url: new.base_url.to_string(),
            model: new.model,
            timeout_secs: new.timeout_secs,
            concurrency: new.concurrency,
            api_key_sealed: sealed,
        };
        self.cached
            .write(move |conn| {
                Box::pin(async move {
                    let json = serde_json::to_string(&saved)
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    let version = store::admin_settings::put(conn, NAME, &json).await?;
                    let words = format!(
                        "{} at {}, model {}, {} s timeout, {} at once; API key: {key_words}",
                        saved.backend,
                        saved.base_url,
                        saved.model,
                        saved.timeout_secs,
                        saved.concurrency
                    );
                    store::audit::record(
                        conn,
                        (actor.0, &actor.1),
                        "model saved",
                        "vision model",
                        &words,
                    )
                    .await?;
                    Ok(Written {
                        result: (),
                        put: Some(Put {
                            key: Self::key(),
                            version,
                            value: CachedModel {
                                version,
                                saved: Some(saved),
                            },
                            ttl: keys::ROW_TTL,
                        }),
                        gone: Vec::new(),
                    })
                })
            })
            .await
    }
}
