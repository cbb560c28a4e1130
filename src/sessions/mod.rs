//! actix-session's store: Redis in front, the sessions table behind.
//!
//! A warm load is one read of the cached copy (from the near cache, else one GET). The idle timeout
//! slides every few minutes: a write to the table that bumps the row's version and puts a new copy,
//! with a fresh TTL, into Redis. A miss or any Redis fault reads
//! the table and puts the value back with a versioned compare-and-set. Deletes write the table and an
//! outbox row in one transaction, then a tombstone to Redis; the outbox makes the tombstone reach
//! Redis even when it was away, so a deleted session never comes back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cache::keys::Key;
use crate::cache::{Cache, Kind};
use crate::services::versioned::{Lookup, Put, Versioned, Written as Cacheable};
use crate::store::sessions::{Lifetime, SessionRow, Written};
use crate::store::{self, Db, StoreError};
use crate::write_tx;

pub mod typed;

pub use typed::TypedSession;

type State = HashMap<String, String>;

/// The key in the session state that holds the signed-in person (see auth::SessionUser).
pub const AUTH_KEY: &str = "auth";
/// The platform connection the person is working on (see routes::platforms::pick_current).
pub const CURRENT_PLATFORM_KEY: &str = "platform";
/// An OAuth connection in progress: its state parameter and instance.
pub const OAUTH_KEY: &str = "oauth";
/// Where a session signed in from (see `Client`): stored with the new session's row.
pub const CLIENT_KEY: &str = "client";

/// The browser and address a session signed in from, for /account.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Client {
    pub user_agent: Option<String>,
    pub address: Option<String>,
}

#[derive(Clone)]
pub struct TieredSessionStore {
    db: Db,
    /// The Redis copies (the one caching pattern); a disabled cache with SESSION_STORAGE=database.
    sessions: Versioned<Cached>,
    idle: Duration,
    limits: Lifetime,
    /// Sessions whose expiry is being slid right now, so a burst of views slides it once.
    touching: Arc<Mutex<HashSet<String>>>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Cached {
    state: State,
    touched: i64,
    /// The row's expiry when this copy was made (idle timeout or absolute lifetime, the sooner).
    #[serde(default)]
    expires: Option<i64>,
}

/// The table id (and Redis key part) of a session key: its SHA-256, so the key itself, the cookie's
/// secret, is stored nowhere.
pub fn session_id(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut id = String::with_capacity(64);
    for b in digest {
        id.push(HEX[usize::from(b >> 4)] as char);
        id.push(HEX[usize::from(b & 15)] as char);
    }
    id
}

/// The signed-in person's id and the credentials version their sign-in checked.
fn signed_in(state: &State) -> Option<(i64, i64)> {
    #[derive(Deserialize)]
    struct Uid {
        uid: i64,
        #[serde(default)]
        cv: i64,
    }
    let raw = state.get(AUTH_KEY)?;
    serde_json::from_str::<Uid>(raw).ok().map(|u| (u.uid, u.cv))
}

fn user_of(state: &State) -> Option<i64> {
    signed_in(state).map(|(uid, _)| uid)
}

impl TieredSessionStore {
    /// `idle` is the sliding idle timeout, `max` the absolute lifetime from sign-in.
    pub fn new(db: Db, cache: Cache, use_redis: bool, idle: Duration, max: Duration) -> Self {
        let cache = if use_redis { cache } else { Cache::disabled() };
        TieredSessionStore {
            sessions: Versioned::new(db.clone(), cache, Kind::Session),
            db,
            idle,
            limits: Lifetime {
                idle: idle.as_secs() as i64,
                max: max.as_secs() as i64,
            },
            touching: Arc::default(),
        }
    }

    fn idle_secs(&self) -> i64 {
        self.limits.idle
    }

    /// How stale the table's expiry may get: a few minutes, less for short idle timeouts.
    fn touch_every(&self) -> i64 {
        (self.idle_secs() / 4).clamp(1, 300)
    }

    /// How long a copy made now may live in Redis: the idle timeout, never past the row's expiry.
    fn ttl_until(&self, expires: i64, now: i64) -> Duration {
        self.idle
            .min(Duration::from_secs((expires - now).max(1) as u64))
    }

    async fn fill(&self, id: &str, version: i64, state: &State, touched: i64, expires: i64) {
        let now = store::now();
        if expires <= now {
            return;
        }
        let cached = Cached {
            state: state.clone(),
            touched,
            expires: Some(expires),
        };
        self.sessions
            .fill(
                &Key::session(id),
                version,
                &cached,
                self.ttl_until(expires, now),
            )
            .await;
    }

    /// Reads the session from the table and puts it back into Redis. Slides the table's expiry
    /// (a write of the expiry alone, which bumps the row's version) when it is a few minutes old, or
    /// `always_slide`.
    async fn load_from_db(
        &self,
        id: &str,
        always_slide: bool,
    ) -> Result<Option<State>, StoreError> {
        let now = store::now();
        let mut conn = self.db.conn().await?;
        let Some(row) = store::sessions::live(&mut conn, id, now, self.limits).await? else {
            return Ok(None);
        };
        let (written, touched) = if always_slide || now - row.last_seen_at >= self.touch_every() {
            match store::sessions::slide(&mut conn, id, now, self.limits).await? {
                Some(written) => (written, now),
                None => return Ok(None),
            }
        } else {
            let touched = row.last_seen_at;
            let written = Written {
                version: row.version,
                expires_at: row.expires_at,
                state: row.state,
            };
            (written, touched)
        };
        drop(conn);
        let state: State = serde_json::from_str(&written.state)
            .map_err(|e| StoreError::Corrupt(format!("session state: {e}")))?;
        self.fill(id, written.version, &state, touched, written.expires_at)
            .await;
        Ok(Some(state))
    }

    /// Slides the table's expiry in the background (a warm read found it a few minutes old).
    fn spawn_touch(&self, id: String) {
        let first = match self.touching.lock() {
            Ok(mut touching) => touching.insert(id.clone()),
            Err(_) => false,
        };
        if !first {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            if let Err(error) = store.load_from_db(&id, true).await {
                tracing::warn!(error = %error, "could not slide a session's expiry");
            }
            if let Ok(mut touching) = store.touching.lock() {
                touching.remove(&id);
            }
        });
    }

    async fn insert_new(&self, state: State) -> Result<String, StoreError> {
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let key = URL_SAFE_NO_PAD.encode(raw);
        let id = session_id(&key);
        let now = store::now();
        let expires_at = now + self.limits.idle.min(self.limits.max);
        let client: Client = state
            .get(CLIENT_KEY)
            .and_then(|raw| serde_json::from_str(raw).ok())
            .unwrap_or_default();
        let row = SessionRow {
            id: id.clone(),
            user_id: user_of(&state),
            state: serde_json::to_string(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            version: 1,
            created_at: now,
            last_seen_at: now,
            expires_at,
            user_agent: client.user_agent,
            signed_in_from: client.address,
        };
        let who = signed_in(&state);
        let mut conn = self.db.conn().await?;
        let created: bool = write_tx!(conn, {
            // A sign-in whose password check predates a password change (or a deactivation)
            // made while it ran gets no session: its cookie names nothing, it is a visitor.
            if let Some((uid, cv)) = who {
                if !store::users::still_signed_in_as(&mut conn, uid, cv).await? {
                    return Ok(false);
                }
            }
            store::sessions::insert(&mut conn, &row).await?;
            Ok(true)
        })?;
        drop(conn);
        if created {
            self.fill(&id, 1, &state, now, expires_at).await;
        } else {
            tracing::info!("a sign-in finished after its credentials changed; no session was made");
        }
        Ok(key)
    }

    /// Writes a live session's new state (database, outbox, then Redis). False when the session
    /// is gone, expired or past its lifetime: then nothing is written anywhere.
    async fn write_state(&self, id: &str, state: State) -> Result<bool, StoreError> {
        let text = serde_json::to_string(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = store::now();
        let limits = self.limits;
        let user = user_of(&state);
        let key = Key::session(id);
        let id = id.to_owned();
        let store = self.clone();
        self.sessions
            .write(move |conn| {
                Box::pin(async move {
                    let written =
                        store::sessions::update_state(conn, &id, user, &text, now, limits).await?;
                    let Some(written) = written else {
                        return Ok(Cacheable::nothing(false));
                    };
                    Ok(Cacheable {
                        result: true,
                        put: Some(Put {
                            key,
                            version: written.version,
                            value: Cached {
                                state,
                                touched: now,
                                expires: Some(written.expires_at),
                            },
                            ttl: store.ttl_until(written.expires_at, now),
                        }),
                        gone: Vec::new(),
                    })
                })
            })
            .await
    }
}

/// Ends sessions by table id: the rows go, and their Redis copies become tombstones (through the
/// outbox when Redis is away), so an ended session never comes back.
pub async fn end_sessions(db: &Db, cache: &Cache, ids: &[String]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let ids = ids.to_vec();
    Versioned::<Cached>::new(db.clone(), cache.clone(), Kind::Session)
        .write(move |conn| {
            Box::pin(async move {
                for id in &ids {
                    store::sessions::delete(conn, id).await?;
                }
                Ok(Cacheable {
                    result: (),
                    put: None,
                    gone: ids.iter().map(|id| Key::session(id)).collect(),
                })
            })
        })
        .await
}

impl SessionStore for TieredSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<State>, LoadError> {
        let id = session_id(session_key.as_ref());
        match self.sessions.lookup(&Key::session(&id)).await {
            Lookup::Value(cached) => {
                let now = store::now();
                // Idle past the timeout, or past the lifetime: the table decides.
                let stale = now - cached.touched >= self.idle_secs()
                    || cached.expires.is_some_and(|e| now >= e);
                if !stale {
                    if now - cached.touched >= self.touch_every() {
                        self.spawn_touch(id);
                    }
                    return Ok(Some(cached.state));
                }
            }
            Lookup::Gone => return Ok(None),
            Lookup::Miss => {}
        }
        // Not in Redis and the database is away: an error, which web::middleware::session_failures
        // answers with the 503 page (not a visitor's pages: the person is still signed in, and
        // signing out now would not hold).
        self.load_from_db(&id, false)
            .await
            .map_err(|e| LoadError::Other(anyhow::Error::new(e)))
    }

    async fn save(&self, state: State, _ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        let key = self
            .insert_new(state)
            .await
            .map_err(|e| SaveError::Other(anyhow::Error::new(e)))?;
        SessionKey::try_from(key).map_err(|e| SaveError::Other(anyhow::Error::new(e)))
    }

    async fn update(
        &self,
        session_key: SessionKey,
        state: State,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let id = session_id(session_key.as_ref());
        let written = self
            .write_state(&id, state)
            .await
            .map_err(|e| UpdateError::Other(anyhow::Error::new(e)))?;
        if !written {
            // Ended (signed out, password changed, ended from /account) or expired while this
            // request ran: it ends as a visitor's. Its cookie names a session that no longer exists,
            // and nothing is written under it or under a new key.
            tracing::info!("a request finished on a session that had ended; nothing was saved");
        }
        Ok(session_key)
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        _ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        // The idle timeout slides on load, every few minutes (see spawn_touch).
        let _ = session_key;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        let id = session_id(session_key.as_ref());
        end_sessions(&self.db, self.sessions.cache(), &[id]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_id_is_the_lowercase_hex_sha256_of_the_key() {
        assert_eq!(
            super::session_id("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
