//! The platform manager: a person's platform connections, served from Redis with the database
//! as the truth. The cached value is the whole list of a person's connections (small), versioned by
//! users.platforms_version, so one read answers both "their list" and "this id, if it is theirs".
//! Cached records never hold a token, not even encrypted.

use serde::{Deserialize, Serialize};

use super::{keys, Cache, Entry, Kind};
use crate::domain::PlatformType;
use crate::store::platforms::PlatformRow;
use crate::store::{self, Conn, Db, StoreError};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PlatformRecord {
    pub id: i64,
    pub user_id: i64,
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
    fn from_row(row: PlatformRow) -> PlatformRecord {
        PlatformRecord {
            id: row.id,
            user_id: row.user_id,
            name: row.name,
            instance_url: row.instance_url,
            platform_type: if row.platform_type == "pixelfed" {
                PlatformType::Pixelfed
            } else {
                PlatformType::Mastodon
            },
            account_id: row.account_id,
            account_username: row.account_username,
            display_name: row.display_name,
            description_limit: row.description_limit,
            is_default: row.is_default,
            needs_reauth: row.needs_reauth,
            created_at: row.created_at,
        }
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
struct CachedList {
    platforms: Vec<PlatformRecord>,
}

#[derive(Clone)]
pub struct PlatformManager {
    db: Db,
    cache: Cache,
}

pub fn list_key(user_id: i64) -> String {
    format!("platforms:{user_id}")
}

impl PlatformManager {
    pub fn new(db: Db, cache: Cache) -> PlatformManager {
        PlatformManager { db, cache }
    }

    pub fn decode_list(entry: Option<Entry>) -> Option<Vec<PlatformRecord>> {
        match entry {
            Some(Entry::Data { payload, .. }) => super::decoded::decode_memoized(&payload, |p| {
                serde_json::from_slice::<CachedList>(p).ok()
            })
            .map(|c| c.platforms),
            _ => None,
        }
    }

    /// A person's connections, oldest first.
    pub async fn list(&self, user_id: i64) -> Result<Vec<PlatformRecord>, StoreError> {
        match self
            .cache
            .get_entry(Kind::Platform, &list_key(user_id))
            .await
        {
            Ok(entry) => {
                if let Some(list) = Self::decode_list(entry) {
                    return Ok(list);
                }
            }
            Err(_) => self.cache.stats().fallback(Kind::Platform),
        }
        self.load_and_fill(user_id).await
    }

    /// The database read behind a miss; puts the list back into Redis.
    pub async fn load_and_fill(&self, user_id: i64) -> Result<Vec<PlatformRecord>, StoreError> {
        let mut conn = self.db.conn().await?;
        // The version first, then the rows: the rows are then at least as new as the version, so a
        // writer's newer version always replaces what this puts back.
        let version = store::platforms::version(&mut conn, user_id).await?;
        let list: Vec<PlatformRecord> = store::platforms::for_user(&mut conn, user_id)
            .await?
            .into_iter()
            .map(PlatformRecord::from_row)
            .collect();
        drop(conn);
        self.put(user_id, version, &list).await;
        Ok(list)
    }

    async fn put(&self, user_id: i64, version: i64, list: &[PlatformRecord]) -> bool {
        let payload = match serde_json::to_vec(&CachedList {
            platforms: list.to_vec(),
        }) {
            Ok(p) => p,
            Err(_) => return false,
        };
        self.cache
            .put_if_newer(&list_key(user_id), version, &payload, keys::ROW_TTL)
            .await
            .is_ok()
    }

    /// The connection, only if it is that person's.
    pub async fn get_platform_by_id(
        &self,
        platform_id: i64,
        user_id: i64,
    ) -> Result<Option<PlatformRecord>, StoreError> {
        Ok(self
            .list(user_id)
            .await?
            .into_iter()
            .find(|p| p.id == platform_id))
    }

    /// Runs `change` in a write transaction that also bumps the person's platforms version and
    /// records outbox rows (the list, and a tombstone for each of `gone`, keys of values that go
    /// with the change); then puts the new list in Redis, writes the tombstones, and drops each
    /// outbox row once Redis has it. `change` returns its own result, handed back.
    pub async fn write<T, F>(
        &self,
        user_id: i64,
        gone: Vec<String>,
        change: F,
    ) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(
            &'c mut Conn,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'c>,
        >,
    {
        let use_outbox = self.cache.enabled();
        let mut conn = self.db.conn().await?;
        let (result, version, list, outbox) = crate::write_tx!(conn, {
            let result = change(&mut conn).await?;
            let version = store::platforms::bump_version(&mut conn, user_id).await?;
            let list: Vec<PlatformRecord> = store::platforms::for_user(&mut conn, user_id)
                .await?
                .into_iter()
                .map(PlatformRecord::from_row)
                .collect();
            let mut outbox = Vec::new();
            if use_outbox {
                outbox.push(store::outbox::push(&mut conn, &list_key(user_id), version).await?);
                for key in &gone {
                    outbox.push(store::outbox::push(&mut conn, key, keys::TOMBSTONE).await?);
                }
            }
            Ok((result, version, list, outbox))
        })?;
        if outbox.is_empty() {
            return Ok(result);
        }
        let mut delivered = Vec::new();
        if self.put(user_id, version, &list).await {
            delivered.push(outbox[0]);
            for (key, id) in gone.iter().zip(&outbox[1..]) {
                if self.cache.invalidate(key, keys::TOMBSTONE).await.is_ok() {
                    delivered.push(*id);
                }
            }
        }
        store::outbox::remove(&mut conn, &delivered).await?;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(instance_url: &str, account_username: &str) -> PlatformRecord {
        PlatformRecord {
            id: 1,
            user_id: 1,
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
