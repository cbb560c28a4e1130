//! Caption settings per platform connection, served from Redis with the database as the truth (a
//! `Versioned` value, see versioned.rs). A connection without saved settings is cached too, as a
//! "use the defaults" marker at version 0, so a warm read never needs SQL.

use serde::{Deserialize, Serialize};

use super::platforms::{PlatformManager, PlatformRecord};
use super::runs::{RunService, RunStatus};
use super::versioned::{Lookup, Put, Versioned, Written};
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
    fn resolve(saved: Option<CaptionSettings>, platform: &PlatformRecord) -> UserSettings {
        let limit = platform.description_limit.max(0) as u32;
        match saved {
            Some(s) => UserSettings {
                settings: s.clamped_to(limit),
                saved: true,
            },
            None => UserSettings {
                settings: CaptionSettings::defaults().clamped_to(limit),
                saved: false,
            },
        }
    }
}

/// Everything the caption generation page needs.
pub struct CaptionView {
    pub platforms: Vec<PlatformRecord>,
    pub current: PlatformRecord,
    pub settings: UserSettings,
    /// The current or last run of the connection, when the caller asked for it.
    pub run: Option<RunStatus>,
}

#[derive(Clone)]
pub struct SettingsManager {
    settings: Versioned<Cached>,
    platforms: PlatformManager,
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
            settings: Versioned::new(db, cache.clone(), Kind::Settings),
            platforms,
        }
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
        let settings = UserSettings::resolve(saved, &platform);
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
        let (mut platforms, mut saved, mut run) = (None, None, None);
        if let Some(pid) = chosen {
            let mut wanted = vec![Key::platforms(user_id), Key::settings(pid)];
            if runs.is_some() {
                wanted.push(Key::progress(pid));
            }
            match self.settings.cache().get_entries(&wanted).await {
                Ok(mut entries) => {
                    if let Some(runs) = runs {
                        run = runs
                            .decode(entries.pop().flatten(), user_id)
                            .map(|status| (pid, status));
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
                    if runs.is_some() {
                        self.settings.cache().stats().fallback(Kind::Progress);
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
        let settings = UserSettings::resolve(saved, &current);
        Ok(Some(CaptionView {
            platforms,
            current,
            settings,
            run,
        }))
    }
}
