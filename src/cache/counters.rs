//! Counters that are not copies of database rows (the sign-in throttle): plain Redis keys under the
//! prefix, outside the cache generation.

use std::time::Duration;

use super::{Cache, CacheError};

impl Cache {
    /// Counts one attempt on each key, atomically, and returns (count, ms left in the window) for
    /// each, in one round trip. A key's window starts at its first attempt.
    pub async fn count_attempt(
        &self,
        logicals: &[String],
        window: Duration,
    ) -> Result<Vec<(i64, i64)>, CacheError> {
        let keys: Vec<String> = logicals.iter().map(|l| self.global_key(l)).collect();
        let n = keys.len() as u64;
        let flat: Vec<i64> = self
            .exec(n * 3, |mut c| async move {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for key in &keys {
                    pipe.cmd("INCR")
                        .arg(key)
                        .cmd("PEXPIRE")
                        .arg(key)
                        .arg(window.as_millis() as u64)
                        .arg("NX")
                        .ignore()
                        .cmd("PTTL")
                        .arg(key);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        Ok(flat
            .chunks(2)
            .map(|p| (p[0], p.get(1).copied().unwrap_or(-2)))
            .collect())
    }

    /// Takes one back from a counter that exists (a missing one stays missing, not -1).
    pub async fn uncount(&self, logical: &str) -> Result<(), CacheError> {
        const UNCOUNT: &str = "if redis.call('EXISTS', KEYS[1]) == 1 then \
             return redis.call('DECR', KEYS[1]) end return 0";
        let key = self.global_key(logical);
        self.exec(1, |mut c| async move {
            redis::Script::new(UNCOUNT)
                .key(key)
                .invoke_async::<i64>(&mut c)
                .await
                .map(|_| ())
        })
        .await
    }

    /// Deletes counters (one round trip).
    pub async fn delete_global(&self, logicals: &[String]) -> Result<(), CacheError> {
        self.delete_global_gated(logicals, false).await
    }

    /// `delete_global`, where `bypass` lets the outbox drain write while the breaker is open.
    pub(super) async fn delete_global_gated(
        &self,
        logicals: &[String],
        bypass: bool,
    ) -> Result<(), CacheError> {
        let keys: Vec<String> = logicals.iter().map(|l| self.global_key(l)).collect();
        let n = keys.len() as u64;
        self.exec_gated(n, bypass, |mut c| async move {
            redis::cmd("DEL").arg(&keys).query_async::<()>(&mut c).await
        })
        .await
    }
}
