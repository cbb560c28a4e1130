//! Watching a connection for new posts: the person's two settings (watch, publish without review)
//! and what the watcher last saw, served from Redis with the database as the truth (a `Versioned`
//! value under `Key::watch`, like the caption settings). The worker's watchers write through here
//! too, so the caption page shows what they saw at once, on any instance.

use serde::{Deserialize, Serialize};

use super::versioned::{ConnFuture, Lookup, Put, Versioned, Written};
use crate::cache::keys::{self, Key};
use crate::cache::{Cache, Entry, Kind};
use crate::domain::{PlatformId, UserId};
use crate::store::watches::WatchRow;
use crate::store::{self, Conn, Db, StoreError};

/// What pages show of a connection's watch (never the lease or the cursor).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    pub enabled: bool,
    pub auto_publish: bool,
    /// When watching was turned on (seconds).
    pub since: Option<i64>,
    /// When the watcher last found a new post (seconds), and its address.
    pub last_post_at: Option<i64>,
    pub last_post_url: Option<String>,
    /// "stream" or "poll" while a worker watches it.
    pub mode: Option<String>,
    /// What stops or troubles the watching, in words for people.
    pub problem: Option<String>,
}

impl WatchState {
    pub fn of(row: &WatchRow) -> WatchState {
        WatchState {
            enabled: row.enabled,
            auto_publish: row.auto_publish,
            since: row.enabled_at,
            last_post_at: row.last_post_at,
            last_post_url: row.last_status_url.clone(),
            mode: row.mode.clone(),
            problem: row.problem.clone(),
        }
    }
}

async fn read_state(
    conn: &mut Conn,
    platform_id: PlatformId,
) -> Result<(i64, WatchState), StoreError> {
    Ok(match store::watches::get(conn, platform_id.get()).await? {
        Some(row) => (row.version, WatchState::of(&row)),
        None => (0, WatchState::default()),
    })
}

/// The value a write leaves in Redis, from the row it wrote.
pub fn put_of(row: &WatchRow) -> Put<WatchState> {
    Put {
        key: Key::watch(PlatformId(row.platform_id)),
        version: row.version,
        value: WatchState::of(row),
        ttl: keys::ROW_TTL,
    }
}

#[derive(Clone)]
pub struct WatchService {
    cached: Versioned<WatchState>,
}

impl WatchService {
    pub fn new(db: Db, cache: Cache) -> WatchService {
        WatchService {
            cached: Versioned::new(db, cache, Kind::Watch),
        }
    }

    /// A connection's watch (callers check the connection is the person's first).
    pub async fn get(&self, platform_id: PlatformId) -> Result<WatchState, StoreError> {
        self.cached
            .read(&Key::watch(platform_id), keys::ROW_TTL, move |conn| {
                Box::pin(read_state(conn, platform_id))
            })
            .await
    }

    /// A watch read in a batch with other keys (the caption page's one round trip); None: read it.
    pub fn decode(&self, entry: Option<Entry>) -> Option<WatchState> {
        match self.cached.decode(entry) {
            Lookup::Value(state) => Some(state),
            _ => None,
        }
    }

    /// The database read behind a miss, and the fill.
    pub async fn load(&self, platform_id: PlatformId) -> Result<WatchState, StoreError> {
        self.cached
            .load(&Key::watch(platform_id), keys::ROW_TTL, move |conn| {
                Box::pin(read_state(conn, platform_id))
            })
            .await
    }

    /// Several connections' watches: one Redis read for all, the database for what it lacks.
    pub async fn many(&self, ids: &[PlatformId]) -> Result<Vec<WatchState>, StoreError> {
        let keys: Vec<Key> = ids.iter().map(|id| Key::watch(*id)).collect();
        let entries = match self.cached.cache().get_entries(&keys).await {
            Ok(entries) => entries,
            Err(_) => {
                self.cached.cache().stats().fallback(Kind::Watch);
                vec![None; ids.len()]
            }
        };
        let mut out = Vec::with_capacity(ids.len());
        for (id, entry) in ids.iter().zip(entries) {
            out.push(match self.decode(entry) {
                Some(state) => state,
                None => self.load(*id).await?,
            });
        }
        Ok(out)
    }

    /// Saves the person's two settings for their connection; None when it is not theirs.
    /// `start_after`: when turning watching on, the account's newest post now.
    pub async fn save(
        &self,
        user_id: UserId,
        platform_id: PlatformId,
        enabled: bool,
        auto_publish: bool,
        start_after: Option<String>,
    ) -> Result<Option<WatchState>, StoreError> {
        self.cached
            .write(move |conn| {
                Box::pin(async move {
                    if store::platforms::owned(conn, platform_id.get(), user_id.get())
                        .await?
                        .is_none()
                    {
                        return Ok(Written::nothing(None));
                    }
                    let row = store::watches::save_settings(
                        conn,
                        platform_id.get(),
                        user_id.get(),
                        enabled,
                        auto_publish,
                        start_after.as_deref(),
                    )
                    .await?;
                    Ok(Written {
                        result: Some(WatchState::of(&row)),
                        put: Some(put_of(&row)),
                        gone: Vec::new(),
                    })
                })
            })
            .await
    }

    /// A watcher's write: `change` runs in a write transaction and returns the watch row when it
    /// changed what pages show (then Redis gets it), None when it changed nothing shown or the
    /// watch is no longer the caller's.
    pub async fn write<R, C>(&self, change: C) -> Result<R, StoreError>
    where
        R: Send + 'static,
        C: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, (R, Option<WatchRow>)> + Send + 'static,
    {
        self.cached
            .write(move |conn| {
                Box::pin(async move {
                    let (result, row) = change(conn).await?;
                    Ok(Written {
                        result,
                        put: row.as_ref().map(put_of),
                        gone: Vec::new(),
                    })
                })
            })
            .await
    }
}
