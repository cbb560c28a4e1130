//! Counters that are not copies of database rows (the sign-in throttle): plain Redis keys under the
//! prefix, outside the cache generation.

use std::time::Duration;

use super::{Cache, CacheError, Kind};

impl Cache {
    /// Throttle counters: (count, ms left in the window) for each key, in one round trip.
    pub async fn counters(&self, logicals: &[String]) -> Result<Vec<(i64, i64)>, CacheError> {
        let keys: Vec<String> = logicals.iter().map(|l| self.global_key(l)).collect();
        let n = keys.len() as u64;
        let flat: Vec<Option<i64>> = self
            .exec(Kind::Throttle, n * 2, |mut c| async move {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("GET").arg(key).cmd("PTTL").arg(key);
                }
                pipe.query_async(&mut c).await
            })
            .await?;
        Ok(flat
            .chunks(2)
            .map(|pair| {
                (
                    pair[0].unwrap_or(0),
                    pair.get(1).copied().flatten().unwrap_or(-2),
                )
            })
            .collect())
    }

    /// Counts one failure on each key; a key's window starts at its first failure.
    pub async fn count_failure(
        &self,
        logicals: &[String],
        window: Duration,
    ) -> Result<(), CacheError> {
        let keys: Vec<String> = logicals.iter().map(|l| self.global_key(l)).collect();
        let n = keys.len() as u64;
        self.exec(Kind::Throttle, n * 2, |mut c| async move {
            let mut pipe = redis::pipe();
            for key in &keys {
                pipe.cmd("INCR")
                    .arg(key)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(key)
                    .arg(window.as_millis() as u64)
                    .arg("NX")
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    pub async fn delete_global(&self, logical: &str) -> Result<(), CacheError> {
        let key = self.global_key(logical);
        self.exec(Kind::Throttle, 1, |mut c| async move {
            redis::cmd("DEL").arg(key).query_async::<()>(&mut c).await
        })
        .await
    }
}
