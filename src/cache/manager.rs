//! The bb8 manager for Redis connections: redis::Client's own, plus one check. A new connection
//! must reach the Redis server the cache generation belongs to (same run_id). Otherwise Redis was
//! restarted, perhaps from an old snapshot, while nothing noticed (an idle pool opening a fresh
//! connection, say), and its values under the current generation's keys could be old. The refusal
//! makes the pool time out, which trips the breaker; the probe then starts a new generation.

use std::sync::{Arc, RwLock};

use redis::aio::MultiplexedConnection;
use redis::{Client, ErrorKind, RedisError};

#[derive(Clone)]
pub struct RedisManager {
    client: Client,
    /// The run_id the current generation belongs to; None until the first reconcile.
    expected: Arc<RwLock<Option<String>>>,
}

impl RedisManager {
    pub fn new(client: Client, expected: Arc<RwLock<Option<String>>>) -> RedisManager {
        RedisManager { client, expected }
    }
}

pub fn parse_run_id(info: &str) -> Option<String> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
}

/// The run_id of the Redis server on the other end of `conn` (INFO server).
pub async fn server_run_id(conn: &mut MultiplexedConnection) -> Result<Option<String>, RedisError> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    Ok(parse_run_id(&info))
}

impl bb8::ManageConnection for RedisManager {
    type Connection = MultiplexedConnection;
    type Error = RedisError;

    async fn connect(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let expected = match self.expected.read() {
            Ok(e) => e.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(expected) = expected {
            if server_run_id(&mut conn).await?.as_deref() != Some(expected.as_str()) {
                return Err(RedisError::from((
                    ErrorKind::ClientError,
                    "Redis is not the server the cache generation belongs to",
                )));
            }
        }
        Ok(conn)
    }

    async fn is_valid(&self, conn: &mut MultiplexedConnection) -> Result<(), RedisError> {
        redis::cmd("PING")
            .query_async::<String>(conn)
            .await
            .map(|_| ())
    }

    fn has_broken(&self, _: &mut MultiplexedConnection) -> bool {
        false
    }
}
