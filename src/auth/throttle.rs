//! The sign-in throttle: 5 failures for one username, or 20 for one address, within 15 minutes lock
//! sign-in for that username or address until the window ends, even with the right password.
//! Counters live in Redis; when Redis is not there, in the database.

use std::net::IpAddr;

use crate::cache::{keys, Cache};
use crate::store::{self, Db, StoreError};

pub const MAX_PER_USERNAME: i64 = 5;
pub const MAX_PER_ADDRESS: i64 = 20;

#[derive(Clone)]
pub struct LoginThrottle {
    db: Db,
    cache: Cache,
}

fn scopes(username: &str, ip: Option<IpAddr>) -> Vec<(String, i64)> {
    let mut out = vec![(
        format!("user:{}", username.to_lowercase()),
        MAX_PER_USERNAME,
    )];
    if let Some(ip) = ip {
        out.push((format!("ip:{ip}"), MAX_PER_ADDRESS));
    }
    out
}

impl LoginThrottle {
    pub fn new(db: Db, cache: Cache) -> Self {
        LoginThrottle { db, cache }
    }

    /// Seconds until sign-in may be tried again, when locked.
    pub async fn locked_for(
        &self,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<u64>, StoreError> {
        let scopes = scopes(username, ip);
        let logicals: Vec<String> = scopes.iter().map(|(s, _)| keys::throttle(s)).collect();
        if let Ok(counts) = self.cache.counters(&logicals).await {
            let wait = scopes
                .iter()
                .zip(counts)
                .filter(|((_, max), (count, _))| count >= max)
                .map(|(_, (_, ms))| (ms.max(1000) as u64).div_ceil(1000))
                .max();
            return Ok(wait);
        }
        let window = keys::THROTTLE_WINDOW.as_secs() as i64;
        let now = store::now();
        let mut conn = self.db.conn().await?;
        let mut wait = None;
        for (scope, max) in &scopes {
            if let Some((failures, start)) =
                store::throttle::get(&mut conn, scope, window, now).await?
            {
                if i64::from(failures) >= *max {
                    let left = (start + window - now).max(1) as u64;
                    wait = Some(wait.map_or(left, |w: u64| w.max(left)));
                }
            }
        }
        Ok(wait)
    }

    pub async fn record_failure(
        &self,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let scopes = scopes(username, ip);
        let logicals: Vec<String> = scopes.iter().map(|(s, _)| keys::throttle(s)).collect();
        if self
            .cache
            .count_failure(&logicals, keys::THROTTLE_WINDOW)
            .await
            .is_ok()
        {
            return Ok(());
        }
        let window = keys::THROTTLE_WINDOW.as_secs() as i64;
        let now = store::now();
        let mut conn = self.db.conn().await?;
        for (scope, _) in &scopes {
            store::throttle::record_failure(&mut conn, scope, window, now).await?;
        }
        Ok(())
    }

    /// A successful sign-in clears the username's count (not the address's).
    pub async fn clear(&self, username: &str) -> Result<(), StoreError> {
        let scope = format!("user:{}", username.to_lowercase());
        let _ = self.cache.delete_global(&keys::throttle(&scope)).await;
        let mut conn = self.db.conn().await?;
        store::throttle::clear(&mut conn, &scope).await
    }
}
