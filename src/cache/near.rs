//! The near cache: copies of Redis values in process memory, so that a warm page sends Redis no
//! command of its own. Redis keeps the copies fresh: one connection per process has
//! `CLIENT TRACKING ON BCAST PREFIX {prefix}g{generation}:` (RESP3), so Redis pushes an
//! invalidation for every write, expiry or eviction of a cached key, whichever instance made it.
//!
//! Freshness, the rule in DESIGN.md (once a save has returned, no older value is served): a read
//! first waits for a barrier, a PING on the tracking connection sent after its request arrived.
//! Why that is sound, from how Redis works (the client-side caching reference,
//! redis.io/docs/latest/develop/reference/client-side-caching/, and src/tracking.c):
//! 1. Redis runs commands one at a time. When a write to a tracked key runs, the invalidation is
//!    put into the tracking connection's output buffer right then, as part of running the write
//!    (trackingInvalidateKey), before the writer's own reply is sent.
//! 2. Each connection's output is written in order, and with RESP3 the pushes travel on the
//!    tracking connection itself, interleaved with its replies in the order they were produced.
//! 3. So a write whose reply its writer had before our request arrived ran before our PING (sent
//!    after the arrival); its invalidation sits ahead of our PONG on the same connection, and the
//!    push handler applies it before the PONG is read.
//!
//! The test near_cache::the_barrier_waits_for_invalidations_on_a_slow_link delays every byte from
//! Redis, and fails when the barrier is skipped. One PING serves every request waiting at that
//! moment: under load a view costs a small fraction of a round trip.
//!
//! Filling: a value read from Redis is kept only if no invalidation arrived since the read began
//! (an epoch counter), so a read racing a write cannot plant the old value. Any fault (the
//! connection closes, a PING misses its deadline, the breaker trips) empties the near cache and
//! turns it off until the breaker's recovery opens a new tracking connection.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};

use super::{Cache, CacheError};

tokio::task_local! {
    /// When the request being served arrived (set by the request middleware).
    static ARRIVED: Instant;
}

/// Runs a request with its arrival time recorded, so all its reads share one barrier.
pub async fn scope<F: Future>(request: F) -> F::Output {
    ARRIVED.scope(Instant::now(), request).await
}

fn arrival() -> Instant {
    ARRIVED
        .try_with(|at| *at)
        .unwrap_or_else(|_| Instant::now())
}

/// How often an idle tracking connection is pinged, so that it is not closed for idleness.
const HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy)]
struct Progress {
    live: bool,
    run: u64,
    /// When the newest answered PING was sent.
    fresh_as_of: Option<Instant>,
}

/// An entry's weight: what it holds in bytes, plus the bookkeeping around it.
#[derive(Clone, Copy, Default)]
struct Bytes;

impl quick_cache::Weighter<String, super::Entry> for Bytes {
    fn weight(&self, key: &String, entry: &super::Entry) -> u64 {
        let payload = match entry {
            super::Entry::Data { payload, .. } => payload.len(),
            super::Entry::Invalid { .. } => 0,
        };
        (key.len() + payload + 64) as u64
    }
}

/// The copies, bounded in bytes; past the bound the least useful ones go (quick_cache's
/// S3-FIFO), not all of them at once.
type Copies = quick_cache::unsync::Cache<String, super::Entry, Bytes>;

struct State {
    map: Copies,
    epoch: u64,
}

pub struct Near {
    state: Mutex<State>,
    live: AtomicBool,
    /// Which tracking connection is current; a connection's pushes and death count only while it is.
    run: AtomicU64,
    progress: tokio::sync::watch::Sender<Progress>,
    demand: tokio::sync::Notify,
}

impl Near {
    /// Holds at most `max_bytes` of copies (keys and values).
    pub fn new(max_bytes: u64) -> Near {
        Near {
            state: Mutex::new(State {
                map: Copies::with_weighter((max_bytes / 1024).max(16) as usize, max_bytes, Bytes),
                epoch: 0,
            }),
            live: AtomicBool::new(false),
            run: AtomicU64::new(0),
            progress: tokio::sync::watch::Sender::new(Progress {
                live: false,
                run: 0,
                fresh_as_of: None,
            }),
            demand: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.state().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<super::Entry> {
        self.state().map.get(key).cloned()
    }

    /// The epoch to hand back to `fill` after reading Redis.
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Keeps a value read from Redis, unless an invalidation arrived since `epoch` was taken.
    pub fn fill(&self, epoch: u64, key: String, entry: super::Entry) {
        let mut state = self.state();
        if !self.is_live() || state.epoch != epoch {
            return;
        }
        state.map.insert(key, entry);
    }

    fn invalidate<'a>(&self, keys: impl Iterator<Item = &'a [u8]>) {
        let mut state = self.state();
        state.epoch += 1;
        for key in keys {
            if let Ok(key) = std::str::from_utf8(key) {
                state.map.remove(key);
            }
        }
    }

    fn flush(&self) {
        let mut state = self.state();
        state.epoch += 1;
        state.map.clear();
    }

    /// Turns the near cache off and empties it; waiting reads give up at once.
    pub fn go_dead(&self) {
        self.live.store(false, Ordering::Release);
        self.flush();
        self.progress.send_modify(|p| p.live = false);
        self.demand.notify_one();
    }

    fn go_live(&self, run: u64) {
        self.flush();
        self.live.store(true, Ordering::Release);
        self.progress.send_modify(|p| {
            p.live = true;
            p.run = run;
            p.fresh_as_of = None;
        });
    }

    fn complete(&self, run: u64, sent_at: Instant) {
        self.progress.send_if_modified(|p| {
            if p.live && p.run == run && p.fresh_as_of.is_none_or(|t| t < sent_at) {
                p.fresh_as_of = Some(sent_at);
                true
            } else {
                false
            }
        });
    }

    /// Waits until a PING sent after this request arrived has been answered. False when the near
    /// cache is off or goes off, or when the deadline passes.
    pub async fn barrier(&self, deadline: Duration) -> bool {
        let arrived = arrival();
        let mut progress = self.progress.subscribe();
        let fresh = |p: &Progress| p.fresh_as_of.is_some_and(|t| t > arrived);
        {
            let now = progress.borrow_and_update();
            if !now.live {
                return false;
            }
            if fresh(&now) {
                return true;
            }
        }
        self.demand.notify_one();
        let outcome = tokio::time::timeout(deadline, progress.wait_for(|p| !p.live || fresh(p)))
            .await
            .map(|waited| waited.map(|p| p.live));
        matches!(outcome, Ok(Ok(true)))
    }
}

/// Applies a tracking connection's pushes as they are read, before any later reply on it.
struct PushHandler {
    near: Arc<Near>,
    run: u64,
}

impl AsyncPushSender for PushHandler {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        match info.kind {
            PushKind::Invalidate => match info.data.first() {
                Some(Value::Array(keys)) => {
                    self.near.invalidate(keys.iter().filter_map(|k| match k {
                        Value::BulkString(bytes) => Some(bytes.as_slice()),
                        Value::SimpleString(text) => Some(text.as_bytes()),
                        _ => None,
                    }))
                }
                // A null key list: the whole database was flushed.
                _ => self.near.flush(),
            },
            PushKind::Disconnection if self.near.run.load(Ordering::Acquire) == self.run => {
                self.near.go_dead();
            }
            _ => {}
        }
        Ok(())
    }
}

impl Cache {
    /// Makes the runtime of the calling HTTP worker the tracking connection's home (the first
    /// worker to call wins), and moves a connection already open elsewhere there. The barrier's
    /// PINGs and their answers are then handled on a thread that serves requests, so the requests
    /// waiting on that worker are woken without crossing threads, and the process's main thread
    /// stays out of every view.
    pub fn track_on_this_worker(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        if !inner.near_enabled {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if inner.tracker_home.set(handle).is_err() {
            return;
        }
        // The Redis server the current generation belongs to, once a recovery has set one.
        let run_id = inner.run_id.read().ok().and_then(|id| id.clone());
        let cache = self.clone();
        tokio::spawn(async move {
            if let Some(run_id) = run_id.filter(|_| cache.near().is_some()) {
                if let Err(error) = cache.open_tracking(&run_id).await {
                    tracing::warn!(error = %error, "could not move the tracking connection to an HTTP worker");
                    cache.trip(&CacheError::TrackingLost);
                }
            }
        });
    }

    /// Opens the tracking connection for the current generation on the server `run_id` and turns
    /// the near cache on, on the tracker's home runtime when there is one. Called by the breaker's
    /// recovery, before it closes. A Redis that cannot track (an old version, or CLIENT not
    /// allowed) leaves the near cache off, with a warning.
    pub(super) async fn start_tracking(&self, run_id: &str) -> Result<(), String> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        if let Some(home) = inner.tracker_home.get() {
            let (sent, opened) = tokio::sync::oneshot::channel();
            let (cache, run_id_owned) = (self.clone(), run_id.to_owned());
            home.spawn(async move {
                let _ = sent.send(cache.open_tracking(&run_id_owned).await);
            });
            // A home whose runtime has stopped drops the task: open it here instead.
            if let Ok(result) = opened.await {
                return result;
            }
        }
        self.open_tracking(run_id).await
    }

    async fn open_tracking(&self, run_id: &str) -> Result<(), String> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let near = &inner.near;
        // A new run first: the current connection's tracker, woken by go_dead, then sees it was
        // replaced and retires instead of reporting a lost connection.
        let run = near.run.fetch_add(1, Ordering::AcqRel) + 1;
        near.go_dead();
        if !inner.near_enabled {
            return Ok(());
        }
        let prefix = format!(
            "{}g{}:",
            inner.prefix,
            inner.generation.load(Ordering::Acquire)
        );
        let mut info = inner.client.get_connection_info().clone();
        info.redis.protocol = ProtocolVersion::RESP3;
        let client = Client::open(info).map_err(|e| e.to_string())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(inner.timeout * 4)
            .set_response_timeout(inner.timeout * 4)
            .set_push_sender(PushHandler {
                near: near.clone(),
                run,
            });
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| e.to_string())?;
        let server = super::manager::server_run_id(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if server.as_deref() != Some(run_id) {
            return Err("Redis changed while the tracking connection opened".to_owned());
        }
        let tracking: redis::RedisResult<()> = redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(&prefix)
            .query_async(&mut conn)
            .await;
        if let Err(error) = tracking {
            let message = error.to_string();
            if super::is_connectivity(&CacheError::Redis(error)) {
                return Err(message);
            }
            tracing::warn!(error = %message, "Redis cannot track keys; every read goes to Redis");
            return Ok(());
        }
        if near.run.load(Ordering::Acquire) != run {
            return Ok(()); // a newer connection was opened meanwhile; it is the one that counts
        }
        near.go_live(run);
        // Trackers of replaced connections are waiting for work: wake them, so they close theirs.
        near.demand.notify_waiters();
        let cache = self.clone();
        tokio::spawn(async move { cache.track(conn, run).await });
        Ok(())
    }

    /// Answers barriers with PINGs on the tracking connection until it fails or is replaced.
    async fn track(self, mut conn: MultiplexedConnection, run: u64) {
        let Some(inner) = &self.inner else {
            return;
        };
        let near = &inner.near;
        loop {
            if near.run.load(Ordering::Acquire) == run {
                tokio::select! {
                    _ = near.demand.notified() => {}
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                }
            }
            let current = || near.run.load(Ordering::Acquire) == run && near.is_live();
            if near.run.load(Ordering::Acquire) != run {
                // Replaced by a newer connection. The wake-up this took may have been meant for
                // the new tracker: pass it on.
                near.demand.notify_one();
                return;
            }
            if !near.is_live() {
                // The connection closed under us (its push handler turned the near cache off):
                // trip, so that the breaker's recovery opens a new one.
                self.trip(&CacheError::TrackingLost);
                return;
            }
            let sent_at = Instant::now();
            inner.stats.round_trips.fetch_add(1, Ordering::Relaxed);
            inner.stats.commands.fetch_add(1, Ordering::Relaxed);
            let ping = redis::cmd("PING");
            let error =
                match tokio::time::timeout(inner.timeout, ping.query_async::<String>(&mut conn))
                    .await
                {
                    Ok(Ok(_)) => {
                        near.complete(run, sent_at);
                        continue;
                    }
                    Ok(Err(error)) => CacheError::Redis(error),
                    Err(_) => CacheError::Timeout,
                };
            if current() {
                self.trip(&error);
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Entry;

    fn entry(version: i64) -> Entry {
        Entry::Data {
            version,
            payload: b"x".to_vec(),
        }
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_dropped() {
        let near = Near::new(1 << 20);
        near.go_live(1);
        let epoch = near.epoch();
        near.invalidate([b"k".as_slice()].into_iter());
        near.fill(epoch, "k".into(), entry(1));
        assert_eq!(near.get("k"), None);
        let epoch = near.epoch();
        near.fill(epoch, "k".into(), entry(2));
        assert_eq!(near.get("k"), Some(entry(2)));
        near.invalidate([b"k".as_slice()].into_iter());
        assert_eq!(near.get("k"), None);
    }

    #[test]
    fn nothing_is_kept_while_dead_and_going_dead_empties_it() {
        let near = Near::new(1 << 20);
        let epoch = near.epoch();
        near.fill(epoch, "k".into(), entry(1));
        assert!(near.is_empty());
        near.go_live(1);
        let epoch = near.epoch();
        near.fill(epoch, "k".into(), entry(1));
        assert_eq!(near.len(), 1);
        near.go_dead();
        assert!(near.is_empty());
        assert!(!near.is_live());
    }

    #[test]
    fn it_never_grows_past_its_bound() {
        // Room for about three entries; ten go in, and it never empties itself to make room.
        let near = Near::new(3 * 80);
        near.go_live(1);
        for i in 0..10 {
            let epoch = near.epoch();
            near.fill(epoch, format!("k{i}"), entry(i));
        }
        assert!((1..=3).contains(&near.len()), "{}", near.len());
        assert_eq!(near.get("k9"), Some(entry(9)));
    }

    #[tokio::test]
    async fn a_barrier_waits_for_a_ping_sent_after_it_arrived() {
        let near = Arc::new(Near::new(1 << 20));
        near.go_live(1);
        let before = Instant::now();
        near.complete(1, before);
        // A ping sent before the read arrived does not count.
        let waiting = tokio::spawn({
            let near = near.clone();
            async move { scope(near.barrier(Duration::from_secs(5))).await }
        });
        near.demand.notified().await;
        assert!(!waiting.is_finished());
        near.complete(1, Instant::now());
        assert!(waiting.await.unwrap());
        // Going dead releases waiters at once, with false.
        let waiting = tokio::spawn({
            let near = near.clone();
            async move { scope(near.barrier(Duration::from_secs(5))).await }
        });
        near.demand.notified().await;
        near.go_dead();
        assert!(!waiting.await.unwrap());
    }
}
