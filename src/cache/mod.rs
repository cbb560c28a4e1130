//! The Redis side: a bb8 pool of `redis::Client`, a circuit breaker, versioned values and the
//! outbox drain. Redis is a copy: every error, timeout or decode failure here is a miss, and the
//! database answers.
//!
//! The breaker: a command that fails to reach Redis (timeout, refused, reset) trips it; while it is
//! open no request touches Redis at all. A background task probes Redis with a fresh connection and,
//! before trusting it again, reconciles the cache generation (a restarted or restored Redis gets a new
//! one) and drains the outbox, then swaps in a fresh pool and closes the breaker.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::Client;

pub mod counters;
pub mod entry;
pub mod keys;
pub mod maintenance;
pub mod manager;
pub mod near;

pub use entry::Entry;
pub use keys::{Key, Kind};
pub use manager::RedisManager;

use crate::config::RedisConfig;
use crate::store::Db;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("Redis is turned off")]
    Disabled,
    #[error("Redis is unavailable (circuit open)")]
    Unavailable,
    #[error("Redis did not answer in time")]
    Timeout,
    #[error("Redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("a cached value could not be decoded")]
    Decode,
    #[error("the connection that tracks changes in Redis was lost")]
    TrackingLost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisStatus {
    Ok,
    Unavailable,
    Disabled,
}

/// Counters for /metrics and for tests that count round trips.
#[derive(Default)]
pub struct CacheStats {
    pub hits: [AtomicU64; 8],
    /// The part of `hits` served from process memory (the near cache).
    pub near_hits: [AtomicU64; 8],
    pub misses: [AtomicU64; 8],
    pub fallbacks: [AtomicU64; 8],
    pub outbox_retries: [AtomicU64; 8],
    pub commands: AtomicU64,
    pub round_trips: AtomicU64,
    pub breaker_trips: AtomicU64,
}

impl CacheStats {
    pub fn hit(&self, kind: Kind) {
        self.hits[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
    pub fn miss(&self, kind: Kind) {
        self.misses[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
    pub fn fallback(&self, kind: Kind) {
        self.fallbacks[kind.index()].fetch_add(1, Ordering::Relaxed);
    }
}

struct Inner {
    client: Client,
    pool: RwLock<bb8::Pool<RedisManager>>,
    /// The Redis run_id the current generation belongs to (shared with the pool's manager).
    run_id: Arc<RwLock<Option<String>>>,
    prefix: String,
    /// Where Redis is, for the log (host and port, or the socket's path; never the password).
    address: String,
    generation: AtomicI64,
    open: AtomicBool,
    wake: tokio::sync::Notify,
    timeout: Duration,
    interval: Duration,
    stats: CacheStats,
    set_if_newer: redis::Script,
    near: Arc<near::Near>,
    near_enabled: bool,
    /// The HTTP worker runtime the tracking connection lives on (see `Cache::track_on_this_worker` in near.rs).
    tracker_home: std::sync::OnceLock<tokio::runtime::Handle>,
}

#[derive(Clone)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
    disabled_stats: Arc<CacheStats>,
}

fn build_pool(manager: RedisManager, timeout: Duration) -> bb8::Pool<RedisManager> {
    bb8::Pool::builder()
        .max_size(8)
        .min_idle(None)
        .connection_timeout(timeout)
        .retry_connection(false)
        .test_on_check_out(false)
        .build_unchecked(manager)
}

impl Cache {
    pub fn disabled() -> Cache {
        Cache {
            inner: None,
            disabled_stats: Arc::new(CacheStats::default()),
        }
    }

    /// Builds the pool without waiting for Redis; the breaker starts open until the first probe
    /// (run here once, bounded by the command timeout) has reconciled the generation.
    pub async fn connect(config: &RedisConfig, db: &Db) -> Result<Cache, redis::RedisError> {
        let Some(url) = &config.url else {
            return Ok(Cache::disabled());
        };
        let client = Client::open(url.expose().as_str())?;
        let run_id = Arc::new(RwLock::new(None));
        let inner = Arc::new(Inner {
            pool: RwLock::new(build_pool(
                RedisManager::new(client.clone(), run_id.clone()),
                config.command_timeout,
            )),
            run_id,
            address: client.get_connection_info().addr.to_string(),
            client,
            prefix: config.prefix.clone(),
            generation: AtomicI64::new(0),
            open: AtomicBool::new(true),
            wake: tokio::sync::Notify::new(),
            timeout: config.command_timeout,
            interval: config.outbox_interval,
            stats: CacheStats::default(),
            set_if_newer: redis::Script::new(entry::SET_IF_NEWER),
            near: Arc::new(near::Near::new(config.near_cache_bytes)),
            near_enabled: config.near_cache,
            tracker_home: std::sync::OnceLock::new(),
        });
        let cache = Cache {
            inner: Some(inner),
            disabled_stats: Arc::new(CacheStats::default()),
        };
        if let Err(error) = cache.recover(db).await {
            tracing::info!(
                redis = %cache.inner.as_ref().map(|i| i.address.as_str()).unwrap_or(""),
                reason = %error,
                "Redis is not reachable; working from the database alone until it is (everything \
                 works without it; REDIS_URL=none stops the attempts)"
            );
        }
        Ok(cache)
    }

    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    pub fn stats(&self) -> &CacheStats {
        match &self.inner {
            Some(inner) => &inner.stats,
            None => &self.disabled_stats,
        }
    }

    /// Whether reads are served from the near cache now, and how many values it holds.
    pub fn near_status(&self) -> (bool, usize) {
        match &self.inner {
            Some(inner) => (self.near().is_some(), inner.near.len()),
            None => (false, 0),
        }
    }

    /// What the breaker believes, without asking Redis.
    pub fn status(&self) -> RedisStatus {
        match &self.inner {
            None => RedisStatus::Disabled,
            Some(inner) if inner.open.load(Ordering::Acquire) => RedisStatus::Unavailable,
            Some(_) => RedisStatus::Ok,
        }
    }

    /// Asks Redis (PING), for /readyz.
    pub async fn ping(&self) -> RedisStatus {
        if self.inner.is_none() {
            return RedisStatus::Disabled;
        }
        match self
            .exec(1, |mut c| async move {
                redis::cmd("PING").query_async::<String>(&mut c).await
            })
            .await
        {
            Ok(_) => RedisStatus::Ok,
            Err(_) => RedisStatus::Unavailable,
        }
    }

    /// The Redis key of a cached copy.
    pub fn key(&self, logical: &str) -> String {
        match &self.inner {
            Some(inner) => {
                // Built by hand: this runs for every value every view, and `format!` is slow.
                let generation = inner.generation.load(Ordering::Acquire);
                let mut key = String::with_capacity(inner.prefix.len() + logical.len() + 22);
                key.push_str(&inner.prefix);
                key.push('g');
                push_decimal(&mut key, generation);
                key.push(':');
                key.push_str(logical);
                key
            }
            None => logical.to_owned(),
        }
    }

    /// The Redis key of something that is not a copy (throttle counters).
    pub fn global_key(&self, logical: &str) -> String {
        match &self.inner {
            Some(inner) => format!("{}{}", inner.prefix, logical),
            None => logical.to_owned(),
        }
    }

    /// Runs one round trip (`commands` commands) on a pooled connection, under the breaker and the
    /// command timeout. A failure to reach Redis trips the breaker.
    pub async fn exec<T, F, Fut>(&self, commands: u64, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        self.exec_gated(commands, false, op).await
    }

    /// `exec`, where `bypass` lets the recovery path talk to Redis while the breaker is still open.
    async fn exec_gated<T, F, Fut>(
        &self,
        commands: u64,
        bypass: bool,
        op: F,
    ) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, redis::RedisError>>,
    {
        let inner = self.inner.as_ref().ok_or(CacheError::Disabled)?;
        if !bypass && inner.open.load(Ordering::Acquire) {
            return Err(CacheError::Unavailable);
        }
        let pool = match inner.pool.read() {
            Ok(pool) => pool.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        inner.stats.round_trips.fetch_add(1, Ordering::Relaxed);
        inner.stats.commands.fetch_add(commands, Ordering::Relaxed);
        let attempt = async {
            let conn = pool.get().await.map_err(|e| match e {
                bb8::RunError::User(e) => CacheError::Redis(e),
                bb8::RunError::TimedOut => CacheError::Timeout,
            })?;
            let conn: MultiplexedConnection = (*conn).clone();
            op(conn).await.map_err(CacheError::Redis)
        };
        let result = match tokio::time::timeout(inner.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(CacheError::Timeout),
        };
        if let Err(error) = &result {
            if !bypass && is_connectivity(error) {
                self.trip(error);
            }
        }
        result
    }

    fn trip(&self, error: &CacheError) {
        if let Some(inner) = &self.inner {
            inner.near.go_dead();
            if !inner.open.swap(true, Ordering::AcqRel) {
                inner.stats.breaker_trips.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %error, "Redis unreachable: circuit open, serving from the database");
                inner.wake.notify_one();
            }
        }
    }

    /// The near cache, when it is on and the breaker is closed.
    fn near(&self) -> Option<&near::Near> {
        let inner = self.inner.as_ref()?;
        (inner.near.is_live() && !inner.open.load(Ordering::Acquire)).then_some(&*inner.near)
    }

    /// Passes the near cache's barrier (see near.rs). Ok(None): the near cache is off, read Redis.
    async fn fresh_near(&self) -> Result<Option<&near::Near>, CacheError> {
        let Some(near) = self.near() else {
            return Ok(None);
        };
        let deadline = self.inner.as_ref().map(|i| i.timeout).unwrap_or_default();
        if near.barrier(deadline).await {
            return Ok(Some(near));
        }
        if self.status() == RedisStatus::Ok {
            self.trip(&CacheError::Timeout);
        }
        Err(CacheError::Unavailable)
    }

    /// Reads one versioned value: from the near cache when it holds it, else with one GET.
    pub async fn get_entry(&self, key: &Key) -> Result<Option<Entry>, CacheError> {
        Ok(self
            .get_entries(std::slice::from_ref(key))
            .await?
            .pop()
            .flatten())
    }

    /// Reads several versioned values: those the near cache holds from memory, the rest in one
    /// round trip (MGET).
    pub async fn get_entries(&self, wanted_keys: &[Key]) -> Result<Vec<Option<Entry>>, CacheError> {
        if wanted_keys.is_empty() {
            return Ok(Vec::new());
        }
        let near = self.fresh_near().await?;
        let keys: Vec<String> = wanted_keys.iter().map(|k| self.key(&k.logical())).collect();
        let mut found: Vec<Option<Entry>> = match near {
            Some(near) => keys.iter().map(|k| near.get(k)).collect(),
            None => vec![None; keys.len()],
        };
        for (key, entry) in wanted_keys.iter().zip(&found) {
            if entry.is_some() {
                let kind = key.kind();
                self.stats().hit(kind);
                self.stats().near_hits[kind.index()].fetch_add(1, Ordering::Relaxed);
            }
        }
        let missing: Vec<usize> = (0..keys.len()).filter(|i| found[*i].is_none()).collect();
        if missing.is_empty() {
            return Ok(found);
        }
        let epoch = near.map(|n| n.epoch());
        let wanted: Vec<&String> = missing.iter().map(|i| &keys[*i]).collect();
        let raws: Vec<Option<Vec<u8>>> = self
            .exec(1, |mut c| async move {
                if wanted.len() == 1 {
                    let raw: Option<Vec<u8>> =
                        redis::cmd("GET").arg(wanted[0]).query_async(&mut c).await?;
                    Ok(vec![raw])
                } else {
                    redis::cmd("MGET").arg(&wanted).query_async(&mut c).await
                }
            })
            .await?;
        for (i, raw) in missing.into_iter().zip(raws) {
            let entry = self.decode_counted(wanted_keys[i].kind(), raw)?;
            if let (Some(near), Some(epoch), Some(entry)) = (near, epoch, &entry) {
                near.fill(epoch, keys[i].clone(), entry.clone());
            }
            found[i] = entry;
        }
        Ok(found)
    }

    fn decode_counted(
        &self,
        kind: Kind,
        raw: Option<Vec<u8>>,
    ) -> Result<Option<Entry>, CacheError> {
        match raw {
            None => {
                self.stats().miss(kind);
                Ok(None)
            }
            Some(raw) => match Entry::decode(&raw) {
                Some(entry) => {
                    self.stats().hit(kind);
                    Ok(Some(entry))
                }
                None => {
                    self.stats().miss(kind);
                    Err(CacheError::Decode)
                }
            },
        }
    }

    /// Writes a copy of a row at `version`, unless Redis already holds something as new.
    pub async fn put_if_newer(
        &self,
        key: &Key,
        version: i64,
        payload: &[u8],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let write = CasWrite {
            key: self.key(&key.logical()),
            version,
            value: Entry::encode_data(version, payload),
            tag: "D",
            ttl,
        };
        self.cas(write, false).await
    }

    /// Marks everything below `min_version` invalid (with TOMBSTONE: the row is gone).
    pub async fn invalidate(&self, key: &Key, min_version: i64) -> Result<bool, CacheError> {
        self.invalidate_gated(key, min_version, false).await
    }

    async fn invalidate_gated(
        &self,
        key: &Key,
        min_version: i64,
        bypass: bool,
    ) -> Result<bool, CacheError> {
        let write = CasWrite {
            key: self.key(&key.logical()),
            version: min_version,
            value: Entry::encode_invalid(min_version),
            tag: "I",
            ttl: keys::ROW_TTL,
        };
        self.cas(write, bypass).await
    }

    async fn cas(&self, write: CasWrite, bypass: bool) -> Result<bool, CacheError> {
        let CasWrite {
            key,
            version,
            value,
            tag,
            ttl,
        } = write;
        let script = match &self.inner {
            Some(inner) => inner.set_if_newer.clone(),
            None => return Err(CacheError::Disabled),
        };
        let written: i64 = self
            .exec_gated(1, bypass, |mut c| async move {
                script
                    .key(key)
                    .arg(version)
                    .arg(value)
                    .arg(ttl.as_millis().max(1) as u64)
                    .arg(tag)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(written == 1)
    }
}

/// One compare-and-set write (see entry::SET_IF_NEWER).
struct CasWrite {
    key: String,
    version: i64,
    value: Vec<u8>,
    tag: &'static str,
    ttl: Duration,
}

/// Errors that mean "Redis is not there", as opposed to a bad command or value.
fn is_connectivity(error: &CacheError) -> bool {
    match error {
        CacheError::Timeout => true,
        CacheError::Redis(e) => {
            e.is_io_error()
                || e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_unrecoverable_error()
        }
        _ => false,
    }
}

/// Appends `n` in decimal, as `format!` would.
fn push_decimal(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for d in &digits[at..] {
        out.push(char::from(*d));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimals_are_written_like_format() {
        for n in [0, 7, 10, 99, 1234567890, -1, -45, i64::MAX, i64::MIN] {
            let mut out = String::from("x");
            super::push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
    }

    #[test]
    fn run_id_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:6379\r\n";
        assert_eq!(
            super::manager::parse_run_id(info).as_deref(),
            Some("abc123")
        );
    }
}
