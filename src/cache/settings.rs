//! Caption settings per platform connection, served from Redis with the database as the truth.
//! A connection without saved settings is cached too, as a "use the defaults" marker at version 0,
//! so a warm read never needs SQL. Saves go to the database first (with an outbox row), then to
//! Redis with a compare-and-set on the row's version.

use serde::{Deserialize, Serialize};

use super::platforms::{PlatformManager, PlatformRecord};
use super::{keys, Cache, Entry, Kind};
use crate::domain::CaptionSettings;
use crate::store::{self, Db, StoreError};

pub fn settings_key(platform_id: i64) -> String {
    format!("settings:{platform_id}")
}

/// What Redis holds for a connection's settings.
#[derive(Clone, Serialize, Deserialize)]
struct Cached {
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
}

#[derive(Clone)]
pub struct SettingsManager {
    db: Db,
    cache: Cache,
    platforms: PlatformManager,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("no such platform connection for this person")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SettingsManager {
    pub fn new(db: Db, cache: Cache, platforms: PlatformManager) -> SettingsManager {
        SettingsManager {
            db,
            cache,
            platforms,
        }
    }

    fn decode(entry: Option<Entry>) -> Option<Option<CaptionSettings>> {
        match entry {
            Some(Entry::Data { payload, .. }) => super::decoded::decode_memoized(&payload, |p| {
                serde_json::from_slice::<Cached>(p).ok()
            })
            .map(|c| c.saved),
            _ => None,
        }
    }

    /// The database read behind a miss; puts the value (or the "defaults" marker) back.
    async fn load_and_fill(&self, platform_id: i64) -> Result<Option<CaptionSettings>, StoreError> {
        let mut conn = self.db.conn().await?;
        let row = store::caption_settings::get(&mut conn, platform_id).await?;
        drop(conn);
        let (version, saved) = match &row {
            Some(r) => (r.version, Some(r.settings())),
            None => (0, None),
        };
        if let Ok(payload) = serde_json::to_vec(&Cached {
            saved: saved.clone(),
        }) {
            let _ = self
                .cache
                .put_if_newer(&settings_key(platform_id), version, &payload, keys::ROW_TTL)
                .await;
        }
        Ok(saved)
    }

    async fn saved_for(&self, platform_id: i64) -> Result<Option<CaptionSettings>, StoreError> {
        match self
            .cache
            .get_entry(Kind::Settings, &settings_key(platform_id))
            .await
        {
            Ok(entry) => {
                if let Some(saved) = Self::decode(entry) {
                    return Ok(saved);
                }
            }
            Err(_) => self.cache.stats().fallback(Kind::Settings),
        }
        self.load_and_fill(platform_id).await
    }

    /// The settings of one of the person's connections; NotFound when it is not theirs.
    pub async fn get_user_settings(
        &self,
        user_id: i64,
        platform_id: i64,
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
        user_id: i64,
        platform_id: i64,
        settings: &CaptionSettings,
    ) -> Result<UserSettings, SettingsError> {
        let use_outbox = self.cache.enabled();
        let mut conn = self.db.conn().await?;
        let key = settings_key(platform_id);
        let saved = crate::write_tx!(conn, {
            let Some(platform) = store::platforms::owned(&mut conn, platform_id, user_id).await?
            else {
                return Ok(None);
            };
            let version = store::caption_settings::save(
                &mut conn,
                platform_id,
                user_id,
                settings,
                store::now(),
            )
            .await?;
            let outbox = if use_outbox {
                Some(store::outbox::push(&mut conn, &key, version).await?)
            } else {
                None
            };
            Ok(Some((platform.description_limit, version, outbox)))
        });
        let Some((limit, version, outbox)) = saved.map_err(SettingsError::Store)? else {
            return Err(SettingsError::NotFound);
        };
        if let Some(outbox) = outbox {
            let payload = serde_json::to_vec(&Cached {
                saved: Some(settings.clone()),
            })
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if self
                .cache
                .put_if_newer(&key, version, &payload, keys::ROW_TTL)
                .await
                .is_ok()
            {
                store::outbox::remove(&mut conn, &[outbox]).await?;
            }
        }
        Ok(UserSettings {
            settings: settings.clamped_to(limit.max(0) as u32),
            saved: true,
        })
    }

    /// The caption page's data in one Redis round trip when warm (the person's connections and the
    /// chosen one's settings, pipelined). None when the person has no connection.
    pub async fn caption_view(
        &self,
        user_id: i64,
        chosen: Option<i64>,
    ) -> Result<Option<CaptionView>, StoreError> {
        let list_key = super::platforms::list_key(user_id);
        let (mut platforms, mut saved) = (None, None);
        if let Some(pid) = chosen {
            match self
                .cache
                .get_entries(&[
                    (Kind::Platform, list_key.clone()),
                    (Kind::Settings, settings_key(pid)),
                ])
                .await
            {
                Ok(mut entries) => {
                    let settings_entry = entries.pop().flatten();
                    platforms = PlatformManager::decode_list(entries.pop().flatten());
                    saved = Self::decode(settings_entry).map(|s| (pid, s));
                }
                Err(_) => {
                    self.cache.stats().fallback(Kind::Platform);
                    self.cache.stats().fallback(Kind::Settings);
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
        let settings = UserSettings::resolve(saved, &current);
        Ok(Some(CaptionView {
            platforms,
            current,
            settings,
        }))
    }
}
