//! How many of a person's drafts wait for review: the count the navigation shows on every page.
//! A `Versioned` value whose version is the time it was counted (milliseconds): every change to a
//! person's drafts invalidates it at the time of the change, so a count taken before the change
//! can never be put back over it (the compare-and-set refuses the older version). The invalidation
//! is best effort, without an outbox: when it cannot reach Redis, the count is at most
//! `WAITING_TTL` old (and while Redis is away every page counts in the database).

use std::time::Duration;

use super::versioned::{Lookup, Versioned};
use crate::cache::keys::Key;
use crate::cache::{Cache, Entry, Kind};
use crate::domain::UserId;
use crate::store::{self, Conn, Db, StoreError};

/// A count kept this long at most.
pub const WAITING_TTL: Duration = Duration::from_secs(60);

/// The count, versioned by the time the count began.
async fn count(conn: &mut Conn, user: UserId) -> Result<(i64, i64), StoreError> {
    let at = store::now_ms();
    Ok((at, store::drafts::waiting_for(conn, user.get()).await?))
}

#[derive(Clone)]
pub struct Waiting {
    cached: Versioned<i64>,
}

impl Waiting {
    pub fn new(db: Db, cache: Cache) -> Waiting {
        Waiting {
            cached: Versioned::new(db, cache, Kind::Waiting),
        }
    }

    /// A count read in a batch with other keys (the caption page's one round trip).
    pub fn decode(&self, entry: Option<Entry>) -> Option<i64> {
        match self.cached.decode(entry) {
            Lookup::Value(n) => Some(n),
            _ => None,
        }
    }

    pub async fn get(&self, user: UserId) -> Result<i64, StoreError> {
        self.cached
            .read(&Key::waiting(user), WAITING_TTL, move |conn| {
                Box::pin(count(conn, user))
            })
            .await
    }

    /// The database count behind a miss, and the fill.
    pub async fn load(&self, user: UserId) -> Result<i64, StoreError> {
        self.cached
            .load(&Key::waiting(user), WAITING_TTL, move |conn| {
                Box::pin(count(conn, user))
            })
            .await
    }

    /// After a change to the person's drafts (committed): the cached count goes.
    pub async fn changed(&self, user: UserId) {
        let cache = self.cached.cache();
        if !cache.enabled() {
            return;
        }
        if let Err(error) = cache.invalidate(&Key::waiting(user), store::now_ms()).await {
            tracing::debug!(error = %error, "the waiting count was not invalidated (it expires)");
        }
    }
}
