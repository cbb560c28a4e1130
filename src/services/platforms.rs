//! The platform manager: a person's platform connections, served from Redis with the database
//! as the truth (a `Versioned` value, see versioned.rs). The cached value is the whole list of a
//! person's connections (small), versioned by users.platforms_version, so one read answers both
//! "their list" and "this id, if it is theirs". Cached records never hold a token, not even
//! encrypted.

use serde::{Deserialize, Serialize};

use super::versioned::{ConnFuture, Lookup, Put, Versioned, Written};
use crate::cache::keys::{self, Key};
use crate::cache::{Cache, Entry, Kind};
use crate::domain::{PlatformId, PlatformType, UserId};
use crate::store::platforms::PlatformRow;
use crate::store::{self, Conn, Db, StoreError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformRecord {
    pub id: PlatformId,
    pub user_id: UserId,
    pub name: String,
    pub instance_url: String,
    pub platform_type: PlatformType,
    pub account_id: String,
    pub account_username: String,
    pub display_name: String,
    pub description_limit: i32,
    pub is_default: bool,
    pub needs_reauth: bool,
    pub created_at: i64,
}

impl PlatformRecord {
    /// An unknown platform type in the database is an error, not silently Mastodon.
    fn from_row(row: PlatformRow) -> Result<PlatformRecord, StoreError> {
        let platform_type = match row.platform_type.as_str() {
            "mastodon" => PlatformType::Mastodon,
            "pixelfed" => PlatformType::Pixelfed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "platform connection {} has the unknown platform type {other:?}",
                    row.id
                )))
            }
        };
        Ok(PlatformRecord {
            id: PlatformId(row.id),
            user_id: UserId(row.user_id),
            name: row.name,
            instance_url: row.instance_url,
            platform_type,
            account_id: row.account_id,
            account_username: row.account_username,
            display_name: row.display_name,
            description_limit: row.description_limit,
            is_default: row.is_default,
            needs_reauth: row.needs_reauth,
            created_at: row.created_at,
        })
    }

    /// `@alice@mastodon.social`
    pub fn handle(&self) -> String {
        let host = self
            .instance_url
            .split("://")
            .nth(1)
            .unwrap_or(&self.instance_url);
        let mut handle = String::with_capacity(2 + self.account_username.len() + host.len());
        handle.push('@');
        handle.push_str(&self.account_username);
        if !self.account_username.contains('@') {
            handle.push('@');
            handle.push_str(host);
        }
        handle
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct CachedList {
    platforms: Vec<PlatformRecord>,
}

#[derive(Clone)]
pub struct PlatformManager {
    lists: Versioned<CachedList>,
}

/// The version first, then the rows: the rows are then at least as new as the version, so a
/// writer's newer version always replaces what a reader puts back.
async fn read_list(conn: &mut Conn, user_id: UserId) -> Result<(i64, CachedList), StoreError> {
    let version = store::platforms::version(conn, user_id.get()).await?;
    let platforms = store::platforms::for_user(conn, user_id.get())
        .await?
        .into_iter()
        .map(PlatformRecord::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((version, CachedList { platforms }))
}

impl PlatformManager {
    pub fn new(db: Db, cache: Cache) -> PlatformManager {
        PlatformManager {
            lists: Versioned::new(db, cache, Kind::Platform),
        }
    }

    /// A cached list read in a batch with other keys (the caption page's one round trip).
    pub fn decode_list(&self, entry: Option<Entry>) -> Option<Vec<PlatformRecord>> {
        match self.lists.decode(entry) {
            Lookup::Value(list) => Some(list.platforms),
            _ => None,
        }
    }

    /// A person's connections, oldest first.
    pub async fn list(&self, user_id: UserId) -> Result<Vec<PlatformRecord>, StoreError> {
        let list = self
            .lists
            .read(&Key::platforms(user_id), keys::ROW_TTL, move |conn| {
                Box::pin(read_list(conn, user_id))
            })
            .await?;
        Ok(list.platforms)
    }

    /// The database read behind a miss; puts the list back into Redis.
    pub async fn load_and_fill(&self, user_id: UserId) -> Result<Vec<PlatformRecord>, StoreError> {
        let list = self
            .lists
            .load(&Key::platforms(user_id), keys::ROW_TTL, move |conn| {
                Box::pin(read_list(conn, user_id))
            })
            .await?;
        Ok(list.platforms)
    }

    /// The connection, only if it is that person's.
    pub async fn get_platform_by_id(
        &self,
        platform_id: PlatformId,
        user_id: UserId,
    ) -> Result<Option<PlatformRecord>, StoreError> {
        Ok(self
            .list(user_id)
            .await?
            .into_iter()
            .find(|p| p.id == platform_id))
    }

    /// Runs `change` in the write transaction of the person's list: it also bumps their platforms
    /// version, caches the new list, and tombstones each of `gone` (keys of values that go with
    /// the change). `change` returns its own result, handed back.
    pub async fn write<T, F>(
        &self,
        user_id: UserId,
        gone: Vec<Key>,
        change: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, T> + Send + 'static,
    {
        self.lists
            .write(move |conn| {
                Box::pin(async move {
                    let result = change(conn).await?;
                    store::platforms::bump_version(conn, user_id.get()).await?;
                    let (version, list) = read_list(conn, user_id).await?;
                    Ok(Written {
                        result,
                        put: Some(Put {
                            key: Key::platforms(user_id),
                            version,
                            value: list,
                            ttl: keys::ROW_TTL,
                        }),
                        gone,
                    })
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(instance_url: &str, account_username: &str) -> PlatformRecord {
        PlatformRecord {
            id: PlatformId(1),
            user_id: UserId(1),
            name: "n".into(),
            instance_url: instance_url.into(),
            platform_type: PlatformType::Mastodon,
            account_id: "1".into(),
            account_username: account_username.into(),
            display_name: "d".into(),
            description_limit: 1500,
            is_default: true,
            needs_reauth: false,
            created_at: 0,
        }
    }

    #[test]
    fn a_handle_names_the_account_and_its_instance() {
        assert_eq!(
            record("https://mastodon.social", "alice").handle(),
            "@alice@mastodon.social"
        );
        assert_eq!(
            record("http://127.0.0.1:8080", "bob").handle(),
            "@bob@127.0.0.1:8080"
        );
        // An account name that already carries its host is kept as it is.
        assert_eq!(
            record("https://example.org", "carol@elsewhere.social").handle(),
            "@carol@elsewhere.social"
        );
    }
}
