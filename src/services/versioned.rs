//! The one caching pattern, written once. Everything fedialt caches (sessions, a person's platform
//! connections, caption settings) is a `Versioned<T>`: a value of type `T` copied from database rows
//! into Redis under a key, carrying the rows' version.
//!
//! - Reads go to Redis (or the near cache); a miss, a fault or a value that does not decode reads
//!   the database and puts the value back with a compare-and-set, so an older version never
//!   replaces a newer one. A tombstone (a value deleted for good) is reported as `Gone`, not read
//!   through: a deleted session must not come back from a slow reader.
//! - Writes go to the database first, in one write transaction with an outbox row per key they
//!   change; after the commit the new value (or tombstone) is written to Redis with the same
//!   compare-and-set, and each outbox row is removed once Redis has it. When Redis is away, the
//!   outbox drain delivers the invalidation later (cache/maintenance.rs), so a saved value is never
//!   served stale for longer than the drain's timer.
//! - Hits, misses and fallbacks are counted per kind for /metrics.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::keys::{self, Key};
use crate::cache::{Cache, Entry, Kind};
use crate::store::{self, Conn, Db, StoreError};

/// A future borrowing a connection: what the closures handed to `read` and `write` return.
pub type ConnFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// What Redis says about a key.
pub enum Lookup<T> {
    Value(T),
    /// Deleted for good (a tombstone): the database has nothing either.
    Gone,
    /// Nothing usable: read the database.
    Miss,
}

/// A value to put under a key after a write, at the version the write gave its rows.
pub struct Put<T> {
    pub key: Key,
    pub version: i64,
    pub value: T,
    pub ttl: Duration,
}

/// What a write transaction did: its own result, the value it leaves under a key (if any), and the
/// keys whose values went with it (tombstoned).
pub struct Written<R, T> {
    pub result: R,
    pub put: Option<Put<T>>,
    pub gone: Vec<Key>,
}

impl<R, T> Written<R, T> {
    /// A transaction that changed nothing cached.
    pub fn nothing(result: R) -> Written<R, T> {
        Written {
            result,
            put: None,
            gone: Vec::new(),
        }
    }
}

pub struct Versioned<T> {
    db: Db,
    cache: Cache,
    kind: Kind,
    _value: PhantomData<fn() -> T>,
}

impl<T> Clone for Versioned<T> {
    fn clone(&self) -> Self {
        Versioned {
            db: self.db.clone(),
            cache: self.cache.clone(),
            kind: self.kind,
            _value: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned + Clone + 'static> Versioned<T> {
    pub fn new(db: Db, cache: Cache, kind: Kind) -> Versioned<T> {
        Versioned {
            db,
            cache,
            kind,
            _value: PhantomData,
        }
    }

    /// The cache itself, for a batch read of several kinds' keys in one round trip.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// A cached entry, decoded. (A per-thread memo of decoded values by their bytes was measured
    /// on 200 sessions of 50 people and bought 1.15x; it is gone. BENCHMARKS.md has the figures.)
    pub fn decode(&self, entry: Option<Entry>) -> Lookup<T> {
        match entry {
            Some(Entry::Data { payload, .. }) => match serde_json::from_slice::<T>(&payload) {
                Ok(value) => Lookup::Value(value),
                Err(_) => {
                    self.cache.stats().fallback(self.kind);
                    Lookup::Miss
                }
            },
            Some(Entry::Invalid { version }) if version >= keys::TOMBSTONE => Lookup::Gone,
            _ => Lookup::Miss,
        }
    }

    /// Asks Redis (one read, or none when the near cache holds it); a fault is a Miss.
    pub async fn lookup(&self, key: &Key) -> Lookup<T> {
        match self.cache.get_entry(key).await {
            Ok(entry) => self.decode(entry),
            Err(_) => {
                self.cache.stats().fallback(self.kind);
                Lookup::Miss
            }
        }
    }

    /// Read-through: Redis, else `load` (the rows' version and the value) from the database and a
    /// fill. A tombstone reads the database too: `load` decides what "gone" means for its rows.
    pub async fn read<L>(&self, key: &Key, ttl: Duration, load: L) -> Result<T, StoreError>
    where
        L: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, (i64, T)>,
    {
        if let Lookup::Value(value) = self.lookup(key).await {
            return Ok(value);
        }
        self.load(key, ttl, load).await
    }

    /// The database read behind a miss, and the fill.
    pub async fn load<L>(&self, key: &Key, ttl: Duration, load: L) -> Result<T, StoreError>
    where
        L: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, (i64, T)>,
    {
        let mut conn = self.db.conn().await?;
        let (version, value) = load(&mut conn).await?;
        drop(conn);
        self.fill(key, version, &value, ttl).await;
        Ok(value)
    }

    /// Puts a value read from the database at `version`, unless Redis holds something as new.
    pub async fn fill(&self, key: &Key, version: i64, value: &T, ttl: Duration) -> bool {
        if !self.cache.enabled() {
            return false;
        }
        let Ok(payload) = serde_json::to_vec(value) else {
            return false;
        };
        match self.cache.put_if_newer(key, version, &payload, ttl).await {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(error = %error, kind = self.kind.label(), "value not cached");
                false
            }
        }
    }

    /// The write: `change` runs in a write transaction and says what it leaves cached; its outbox
    /// rows are written in the same transaction; then Redis gets the new value and the tombstones,
    /// and each outbox row goes once Redis has it.
    pub async fn write<R, C>(&self, change: C) -> Result<R, StoreError>
    where
        C: for<'c> FnOnce(&'c mut Conn) -> ConnFuture<'c, Written<R, T>>,
    {
        let use_outbox = self.cache.enabled();
        let mut conn = self.db.conn().await?;
        let (written, outbox) = crate::write_tx!(conn, {
            let written = change(&mut conn).await?;
            let mut outbox = Vec::new();
            if use_outbox {
                if let Some(put) = &written.put {
                    outbox.push(store::outbox::push(&mut conn, &put.key, put.version).await?);
                }
                for key in &written.gone {
                    outbox.push(store::outbox::push(&mut conn, key, keys::TOMBSTONE).await?);
                }
            }
            Ok((written, outbox))
        })?;
        if outbox.is_empty() {
            return Ok(written.result);
        }
        let mut outbox = outbox.into_iter();
        let mut delivered = Vec::new();
        if let Some(put) = &written.put {
            let row = outbox.next();
            let sent = match serde_json::to_vec(&put.value) {
                Ok(payload) => self
                    .cache
                    .put_if_newer(&put.key, put.version, &payload, put.ttl)
                    .await
                    .is_ok(),
                Err(_) => false,
            };
            if sent {
                delivered.extend(row);
            }
        }
        for (key, row) in written.gone.iter().zip(outbox) {
            match self.cache.invalidate(key, keys::TOMBSTONE).await {
                Ok(_) => delivered.push(row),
                Err(error) => {
                    tracing::info!(error = %error, "invalidation queued in the outbox for Redis");
                    break;
                }
            }
        }
        store::outbox::remove(&mut conn, &delivered).await?;
        Ok(written.result)
    }
}
