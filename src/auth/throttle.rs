//! The sign-in throttle. Every attempt is counted, atomically, *before* the password is checked, so
//! however many arrive at once, at most the limit of them is ever checked within a window:
//! - 5 per username from one address (IPv6 grouped by /64): the limit that stops guessing;
//! - 20 per address, whatever the usernames: one address trying many accounts;
//! - 50 per username from all addresses together, counting only the attempts the two limits above
//!   let through: a spread-out attack on one account, with a ceiling that one address alone can
//!   never reach, so a stranger cannot lock the owner out from elsewhere.
//!
//! Past a limit, sign-in for that scope waits until its 15-minute window ends, even with the right
//! password. A successful sign-in clears the username's counts (not the address's). Counters live
//! in Redis; when Redis is not there, in the database (an atomic upsert that returns the count).

use std::net::IpAddr;

use crate::cache::{keys, Cache, Key};
use crate::store::{self, Db, StoreError};

pub const MAX_PER_ACCOUNT_AND_ADDRESS: i64 = 5;
pub const MAX_PER_ADDRESS: i64 = 20;
pub const MAX_PER_USERNAME: i64 = 50;

#[derive(Clone)]
pub struct LoginThrottle {
    db: Db,
    cache: Cache,
}

/// The address as the throttle counts it: IPv4 as it is, IPv6 by its /64 (one subscriber's
/// network, which hands its devices any address in it).
fn address_group(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The scopes one attempt counts against, with their limits, in two stages: this address's
/// (for this username, and for any), then the username's from everywhere. The second counts only
/// attempts the first let through, so one address cannot push the username's count up with
/// attempts already refused: locking the owner out takes many addresses.
fn stages(username: &str, ip: Option<IpAddr>) -> [Vec<(String, i64)>; 2] {
    let username = username.to_lowercase();
    let group = ip
        .map(address_group)
        .unwrap_or_else(|| "unknown".to_owned());
    let mut local = vec![(
        format!("pair:{username}|{group}"),
        MAX_PER_ACCOUNT_AND_ADDRESS,
    )];
    if ip.is_some() {
        local.push((format!("ip:{group}"), MAX_PER_ADDRESS));
    }
    [local, vec![(format!("user:{username}"), MAX_PER_USERNAME)]]
}

impl LoginThrottle {
    pub fn new(db: Db, cache: Cache) -> Self {
        LoginThrottle { db, cache }
    }

    /// Counts this attempt. Some(seconds to wait) when it is over a limit: then the password must
    /// not be checked at all.
    pub async fn attempt(
        &self,
        username: &str,
        ip: Option<IpAddr>,
    ) -> Result<Option<u64>, StoreError> {
        for stage in stages(username, ip) {
            if let Some(wait) = self.count(&stage).await? {
                return Ok(Some(wait));
            }
        }
        Ok(None)
    }

    /// Counts one attempt on each scope (atomically each); the longest wait among those over
    /// their limit.
    async fn count(&self, scopes: &[(String, i64)]) -> Result<Option<u64>, StoreError> {
        let logicals: Vec<String> = scopes
            .iter()
            .map(|(s, _)| Key::throttle(s).logical())
            .collect();
        if let Ok(counts) = self
            .cache
            .count_attempt(&logicals, keys::THROTTLE_WINDOW)
            .await
        {
            return Ok(scopes
                .iter()
                .zip(counts)
                .filter(|((_, max), (count, _))| count > max)
                .map(|(_, (_, ms))| (ms.max(1000) as u64).div_ceil(1000))
                .max());
        }
        let window = keys::THROTTLE_WINDOW.as_secs() as i64;
        let now = store::now();
        let mut conn = self.db.conn().await?;
        let mut wait = None;
        for (scope, max) in scopes {
            let (count, start) =
                store::throttle::record_attempt(&mut conn, scope, window, now).await?;
            if i64::from(count) > *max {
                let left = (start + window - now).max(1) as u64;
                wait = Some(wait.map_or(left, |w: u64| w.max(left)));
            }
        }
        Ok(wait)
    }

    /// An attempt that was counted but never got its answer (503: every check busy, or the
    /// database away): it is taken back from every count, so people are not locked out by an
    /// outage. Best effort: what cannot be reached now keeps its count.
    pub async fn forget(&self, username: &str, ip: Option<IpAddr>) {
        let [local, everywhere] = stages(username, ip);
        for (scope, _) in local.iter().chain(&everywhere) {
            if self
                .cache
                .uncount(&Key::throttle(scope).logical())
                .await
                .is_err()
            {
                if let Ok(mut conn) = self.db.conn().await {
                    let _ = store::throttle::uncount(&mut conn, scope).await;
                }
            }
        }
    }

    /// A successful sign-in: the username's counts (from this address, and from everywhere) start
    /// again. When Redis cannot be told now, the outbox tells it later, so the count never outlives
    /// the success; the database's counts (kept while Redis was away) go at once.
    pub async fn succeeded(&self, username: &str, ip: Option<IpAddr>) -> Result<(), StoreError> {
        let [local, everywhere] = stages(username, ip);
        let cleared: Vec<String> = [&local[0], &everywhere[0]]
            .into_iter()
            .map(|(scope, _)| scope.clone())
            .collect();
        let logicals: Vec<String> = cleared.iter().map(|s| Key::throttle(s).logical()).collect();
        // The address's count keeps its failures but not this success: twenty people signing in
        // from one office (one address) within the window must not lock it.
        let address = local.get(1).map(|(scope, _)| scope.clone());
        let mut conn = self.db.conn().await?;
        store::throttle::clear(&mut conn, &cleared).await?;
        if let Some(scope) = &address {
            store::throttle::uncount(&mut conn, scope).await?;
        }
        if !self.cache.enabled() {
            return Ok(());
        }
        if let Some(scope) = &address {
            // Best effort: a lost decrement only leaves one attempt counted.
            let _ = self.cache.uncount(&Key::throttle(scope).logical()).await;
        }
        if let Err(error) = self.cache.delete_global(&logicals).await {
            tracing::info!(error = %error, "sign-in counts queued in the outbox for Redis");
            for scope in &cleared {
                store::outbox::push(&mut conn, &Key::throttle(scope), 0).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_group(a), address_group(b));
        assert_ne!(address_group(a), address_group(c));
        assert_eq!(
            address_group("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3"
        );
    }

    #[test]
    fn an_attempt_counts_three_ways_in_two_stages() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let [local, everywhere] = stages("Alice", Some(ip));
        assert_eq!(
            local,
            vec![
                ("pair:alice|192.0.2.7".to_owned(), 5),
                ("ip:192.0.2.7".to_owned(), 20),
            ]
        );
        assert_eq!(everywhere, vec![("user:alice".to_owned(), 50)]);
    }
}
