//! Caption settings per platform connection, served from Redis with the database as the truth (a
//! `Versioned` value, see versioned.rs). A connection without saved settings is cached too, as a
//! "use the defaults" marker at version 0, so a warm read never needs SQL.

use serde::{Deserialize, Serialize};

use super::platforms::{PlatformManager, PlatformRecord};
use super::runs::{RunService, RunStatus};
use super::versioned::{Lookup, Put, Versioned, Written};
use super::watch::{WatchService, WatchState};
use crate::cache::keys::{self, Key};
use crate::cache::{Cache, Kind};
use crate::domain::{CaptionSettings, PlatformId, UserId};
use crate::store::{self, Conn, Db, StoreError};

/// What Redis holds for a connection's settings: the saved ones, or None for the defaults.
#[derive(Clone, Serialize, Deserialize)]
pub struct Cached {
    saved: Option<CaptionSettings>,
}

/// A connection's settings as they apply: saved ones, or the defaults; clamped to the instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UserSettings {
    pub settings: CaptionSettings,
    pub saved: bool,
}

impl UserSettings {
    fn resolve(
        saved: Option<CaptionSettings>,
        defaults: CaptionSettings,
        platform: &PlatformRecord,
    ) -> UserSettings {
        let limit = platform.description_limit.max(0) as u32;
        match saved {
            Some(s) => UserSettings {
                settings: s.clamped_to(limit),
                saved: true,
            },
            None => UserSettings {
                settings: defaults.clamped_to(limit),
                saved: false,
            },
        }
    }
}

/// What Redis holds for the system-wide defaults: the ones admins saved, or None for the built-in
/// ones.
#[derive(Clone, Serialize, Deserialize)]
pub struct CachedDefaults {
    saved: Option<CaptionSettings>,
}

impl CachedDefaults {
    fn settings(self) -> CaptionSettings {
        self.saved.unwrap_or_else(CaptionSettings::defaults)
    }
}

async fn read_defaults(conn: &mut Conn) -> Result<(i64, CachedDefaults), StoreError> {
    let row = store::admin_settings::get(conn, store::admin_settings::CAPTION_DEFAULTS).await?;
    Ok(match row {
        // A value that no longer parses (an older shape) falls back to the built-in defaults.
        Some((value, version)) => (
            version,
            CachedDefaults {
                saved: serde_json::from_str(&value).ok(),
            },
        ),
        None => (0, CachedDefaults { saved: None }),
    })
}

/// Everything the caption generation page needs.
pub struct CaptionView {
    pub platforms: Vec<PlatformRecord>,
    pub current: PlatformRecord,
    pub settings: UserSettings,
    /// The current or last run of the connection, when the caller asked for it.
    pub run: Option<RunStatus>,
    /// Whether the connection is watched for new posts, with the run.
    pub watch: Option<WatchState>,
    /// How many of the person's drafts wait for review (None when it could not be read).
    pub waiting: Option<i64>,
}

#[derive(Clone)]
pub struct SettingsManager {
    settings: Versioned<Cached>,
    defaults: Versioned<CachedDefaults>,
    platforms: PlatformManager,
    watches: WatchService,
    waiting: super::waiting::Waiting,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("no such platform connection for this person")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn read_saved(conn: &mut Conn, platform_id: PlatformId) -> Result<(i64, Cached), StoreError> {
    let row = store::caption_settings::get(conn, platform_id.get()).await?;
    Ok(match row {
        Some(r) => (
            r.version,
            Cached {
                saved: Some(r.settings()),
            },
        ),
        None => (0, Cached { saved: None }),
    })
}

impl SettingsManager {
    pub fn new(db: Db, cache: Cache, platforms: PlatformManager) -> SettingsManager {
        SettingsManager {
            settings: Versioned::new(db.clone(), cache.clone(), Kind::Settings),
            defaults: Versioned::new(db.clone(), cache.clone(), Kind::Admin),
            watches: WatchService::new(db.clone(), cache.clone()),
            waiting: super::waiting::Waiting::new(db, cache.clone()),
            platforms,
        }
    }

    fn defaults_key() -> Key {
        Key::admin(store::admin_settings::CAPTION_DEFAULTS)
    }

    /// The caption settings of every connection without its own: what admins saved, else the
    /// built-in ones.
    pub async fn defaults(&self) -> Result<CaptionSettings, StoreError> {
        let cached = self
            .defaults
            .read(&Self::defaults_key(), keys::ROW_TTL, |conn| {
                Box::pin(read_defaults(conn))
            })
            .await?;
        Ok(cached.settings())
    }

    /// Saves the system-wide defaults (the database with an outbox row, then Redis), with the
    /// audit row in the same transaction.
    pub async fn save_defaults(
        &self,
        settings: &CaptionSettings,
        actor: (i64, String),
    ) -> Result<(), StoreError> {
        let new = settings.clone();
        self.defaults
            .write(move |conn| {
                Box::pin(async move {
                    let json = serde_json::to_string(&new)
                        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                    let version = store::admin_settings::put(
                        conn,
                        store::admin_settings::CAPTION_DEFAULTS,
                        &json,
                    )
                    .await?;
                    let words = format!(
                        "{} posts a run; descriptions up to {} characters, aiming for {} to {}; \
                         {} s between posts; redo earlier descriptions: {}",
                        new.max_posts_per_run,
                        new.max_caption_length,
                        new.optimal_min_length,
                        new.optimal_max_length,
                        new.processing_delay,
                        if new.reprocess_existing { "yes" } else { "no" }
                    );
                    store::audit::record(
                        conn,
                        (actor.0, &actor.1),
                        "defaults saved",
                        "caption defaults",
                        &words,
                    )
                    .await?;
                    Ok(Written {
                        result: (),
                        put: Some(Put {
                            key: Self::defaults_key(),
                            version,
                            value: CachedDefaults { saved: Some(new) },
                            ttl: keys::ROW_TTL,
                        }),
                        gone: Vec::new(),
                    })
                })
            })
            .await
    }

    async fn load_and_fill(
        &self,
        platform_id: PlatformId,
    ) -> Result<Option<CaptionSettings>, StoreError> {
        let cached = self
            .settings
            .load(&Key::settings(platform_id), keys::ROW_TTL, move |conn| {
                Box::pin(read_saved(conn, platform_id))
            })
            .await?;
        Ok(cached.saved)
    }

    async fn saved_for(
        &self,
        platform_id: PlatformId,
    ) -> Result<Option<CaptionSettings>, StoreError> {
        let cached = self
            .settings
            .read(&Key::settings(platform_id), keys::ROW_TTL, move |conn| {
                Box::pin(read_saved(conn, platform_id))
            })
            .await?;
        Ok(cached.saved)
    }

    /// The settings of one of the person's connections; NotFound when it is not theirs.
    pub async fn get_user_settings(
        &self,
        user_id: UserId,
        platform_id: PlatformId,
    ) -> Result<(PlatformRecord, UserSettings), SettingsError> {
        let platform = self
            .platforms
            .get_platform_by_id(platform_id, user_id)
            .await?
            .ok_or(SettingsError::NotFound)?;
        let saved = self.saved_for(platform_id).await?;
        let defaults = match saved {
            Some(_) => CaptionSettings::defaults(),
            None => self.defaults().await?,
        };
        let settings = UserSettings::resolve(saved, defaults, &platform);
        Ok((platform, settings))
    }

    /// Saves validated settings: the database transaction first (with an outbox row), then Redis.
    pub async fn update_user_settings(
        &self,
        user_id: UserId,
        platform_id: PlatformId,
        settings: &CaptionSettings,
    ) -> Result<UserSettings, SettingsError> {
        let new = settings.clone();
        let limit = self
            .settings
            .write(move |conn| {
                Box::pin(async move {
                    let Some(platform) =
                        store::platforms::owned(conn, platform_id.get(), user_id.get()).await?
                    else {
                        return Ok(Written::nothing(None));
                    };
                    let version = store::caption_settings::save(
                        conn,
                        platform_id.get(),
                        user_id.get(),
                        &new,
                        store::now(),
                    )
                    .await?;
                    Ok(Written {
                        result: Some(platform.description_limit),
                        put: Some(Put {
                            key: Key::settings(platform_id),
                            version,
                            value: Cached { saved: Some(new) },
                            ttl: keys::ROW_TTL,
                        }),
                        gone: Vec::new(),
                    })
                })
            })
            .await?
            .ok_or(SettingsError::NotFound)?;
        Ok(UserSettings {
            settings: settings.clamped_to(limit.max(0) as u32),
            saved: true,
        })
    }

    /// The caption page's data in one Redis round trip when warm (the person's connections and the
    /// chosen one's settings, pipelined). None when the person has no connection.
    pub async fn caption_view(
        &self,
        user_id: UserId,
        chosen: Option<PlatformId>,
        runs: Option<&RunService>,
    ) -> Result<Option<CaptionView>, StoreError> {
        let (mut platforms, mut saved, mut run, mut defaults) = (None, None, None, None);
        let mut watch = None;
        let mut waiting = None;
        if let Some(pid) = chosen {
            let mut wanted = vec![
                Key::platforms(user_id),
                Key::settings(pid),
                Self::defaults_key(),
            ];
            if runs.is_some() {
                wanted.push(Key::progress(pid));
                wanted.push(Key::watch(pid));
            }
            wanted.push(Key::waiting(user_id));
            match self.settings.cache().get_entries(&wanted).await {
                Ok(mut entries) => {
                    waiting = self.waiting.decode(entries.pop().flatten());
                    if let Some(runs) = runs {
                        watch = self
                            .watches
                            .decode(entries.pop().flatten())
                            .map(|state| (pid, state));
                        run = runs
                            .decode(entries.pop().flatten(), user_id)
                            .map(|status| (pid, status));
                    }
                    if let Lookup::Value(cached) = self.defaults.decode(entries.pop().flatten()) {
                        defaults = Some(cached.settings());
                    }
                    let settings_entry = entries.pop().flatten();
                    platforms = self.platforms.decode_list(entries.pop().flatten());
                    if let Lookup::Value(cached) = self.settings.decode(settings_entry) {
                        saved = Some((pid, cached.saved));
                    }
                }
                Err(_) => {
                    self.settings.cache().stats().fallback(Kind::Platform);
                    self.settings.cache().stats().fallback(Kind::Settings);
                    self.settings.cache().stats().fallback(Kind::Admin);
                    self.settings.cache().stats().fallback(Kind::Waiting);
                    if runs.is_some() {
                        self.settings.cache().stats().fallback(Kind::Progress);
                        self.settings.cache().stats().fallback(Kind::Watch);
                    }
                }
            }
        }
        let platforms = match platforms {
            Some(list) => list,
            None => self.platforms.load_and_fill(user_id).await?,
        };
        let current = chosen
            .and_then(|id| platforms.iter().find(|p| p.id == id))
            .or_else(|| platforms.iter().find(|p| p.is_default))
            .or_else(|| platforms.first())
            .cloned();
        let Some(current) = current else {
            return Ok(None);
        };
        let saved = match saved {
            Some((pid, s)) if pid == current.id => s,
            _ if Some(current.id) == chosen => self.load_and_fill(current.id).await?,
            _ => self.saved_for(current.id).await?,
        };
        let run = match (runs, run) {
            (None, _) => None,
            (Some(_), Some((pid, status))) if pid == current.id => Some(status),
            (Some(runs), _) if Some(current.id) == chosen => {
                Some(runs.load_status(user_id, current.id).await?)
            }
            (Some(runs), _) => Some(runs.status(user_id, current.id).await?),
        };
        let watch = match (runs, watch) {
            (None, _) => None,
            (Some(_), Some((pid, state))) if pid == current.id => Some(state),
            (Some(_), _) if Some(current.id) == chosen => {
                Some(self.watches.load(current.id).await?)
            }
            (Some(_), _) => Some(self.watches.get(current.id).await?),
        };
        let waiting = match waiting {
            Some(n) => Some(n),
            None if chosen.is_some() => self.waiting.load(user_id).await.ok(),
            None => self.waiting.get(user_id).await.ok(),
        };
        // The defaults matter only to a connection without its own settings.
        let defaults = match (&saved, defaults) {
            (Some(_), _) => CaptionSettings::defaults(),
            (None, Some(d)) => d,
            (None, None) => self.defaults().await?,
        };
        let settings = UserSettings::resolve(saved, defaults, &current);
        Ok(Some(CaptionView {
            platforms,
            current,
            settings,
            run,
            watch,
            waiting,
        }))
    }
}
