//! The cache's background work: draining the outbox on a timer, and, while the breaker is open,
//! probing Redis until it can be trusted again (generation reconciled, outbox drained, fresh pool).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{build_pool, Cache, Kind, RedisManager};
use crate::store::{self, Db};

impl Cache {
    /// Starts the background task: drains the outbox every interval, and while the breaker is open,
    /// probes Redis until it can be trusted again. Ends when `shutdown` fires.
    pub fn spawn_maintenance(&self, db: Db, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let cache = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = inner.wake.notified() => {}
                    _ = tokio::time::sleep(inner.interval) => {}
                }
                if *shutdown.borrow() {
                    break;
                }
                if inner.open.load(Ordering::Acquire) {
                    // Give a just-tripped breaker a moment before the first probe.
                    tokio::time::sleep(inner.interval.min(Duration::from_millis(200))).await;
                    if let Err(error) = cache.recover(&db).await {
                        tracing::debug!(error = %error, "Redis probe failed");
                    }
                } else if let Err(error) = cache.drain_outbox(&db, false).await {
                    tracing::debug!(error = %error, "outbox drain failed");
                }
            }
        });
    }

    /// Probes Redis with a fresh connection; on success reconciles the generation, drains the
    /// outbox, swaps in a fresh pool and closes the breaker.
    pub(super) async fn recover(&self, db: &Db) -> Result<(), String> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let probe = async {
            let mut conn = inner
                .client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            let run_id = super::manager::server_run_id(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<String, String>(run_id.unwrap_or_default())
        };
        let run_id = tokio::time::timeout(inner.timeout * 4, probe)
            .await
            .map_err(|_| "probe timed out".to_owned())??;
        let mut conn = db.conn().await.map_err(|e| e.to_string())?;
        let generation = store::cache_state::reconcile(&mut conn, &run_id)
            .await
            .map_err(|e| e.to_string())?;
        drop(conn);
        let previous = inner.generation.swap(generation, Ordering::AcqRel);
        if previous == 0 {
            tracing::info!(redis = %inner.address, "using Redis");
        } else if previous != generation {
            tracing::info!(
                generation,
                "Redis is a new or restarted server: starting a fresh cache from the database (nothing is lost)"
            );
        }
        *inner
            .run_id
            .write()
            .map_err(|_| "run_id lock poisoned".to_owned())? = Some(run_id.clone());
        *inner
            .pool
            .write()
            .map_err(|_| "pool lock poisoned".to_owned())? = build_pool(
            RedisManager::new(inner.client.clone(), inner.run_id.clone()),
            inner.timeout,
        );
        self.drain_outbox(db, true)
            .await
            .map_err(|e| e.to_string())?;
        self.start_tracking(&run_id).await?;
        if inner.open.swap(false, Ordering::AcqRel) && previous != 0 {
            tracing::info!("Redis is reachable again; serving from it");
        }
        Ok(())
    }

    /// Applies pending outbox invalidations. `bypass` lets the recovery path write while the breaker
    /// is still open (it must drain before it trusts Redis).
    pub async fn drain_outbox(&self, db: &Db, bypass: bool) -> Result<usize, String> {
        let Some(inner) = &self.inner else {
            return Ok(0);
        };
        let mut conn = db.conn().await.map_err(|e| e.to_string())?;
        let rows = store::outbox::oldest(&mut conn, 500)
            .await
            .map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut done = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(key) = row.key() else {
                // Written by a newer build this one does not understand: leave it to that build.
                continue;
            };
            let kind = key.kind();
            let delivered = if kind == Kind::Throttle {
                // A sign-in throttle count that a successful sign-in could not clear.
                self.delete_global_gated(&[key.logical()], bypass).await
            } else {
                self.invalidate_gated(&key, row.min_version, bypass)
                    .await
                    .map(|_| ())
            };
            match delivered {
                Ok(_) => {
                    inner.stats.outbox_retries[kind.index()].fetch_add(1, Ordering::Relaxed);
                    done.push(row.id);
                }
                Err(error) => {
                    store::outbox::remove(&mut conn, &done)
                        .await
                        .map_err(|e| e.to_string())?;
                    return Err(error.to_string());
                }
            }
        }
        store::outbox::remove(&mut conn, &done)
            .await
            .map_err(|e| e.to_string())?;
        Ok(done.len())
    }
}
