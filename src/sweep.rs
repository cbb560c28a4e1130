//! Housekeeping: expired sessions, old throttle counters, OAuth connections started but never
//! answered, finished runs past their retention, publishing jobs and new-post jobs long done. (Outbox rows are not swept: each stays until Redis has it.)

use std::time::Duration;

use crate::cache::keys;
use crate::store::{self, Db, StoreError};

/// Finished runs are kept this long (each connection's newest run stays regardless); their drafts
/// stay until they are published or rejected.
pub const RUN_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

pub async fn sweep_once(db: &Db) -> Result<(usize, usize), StoreError> {
    let now = store::now();
    let mut conn = db.conn().await?;
    let sessions = store::sessions::delete_expired(&mut conn, now).await?;
    let throttles =
        store::throttle::delete_older_than(&mut conn, now - keys::THROTTLE_WINDOW.as_secs() as i64)
            .await?;
    store::oauth_pending::delete_older_than(&mut conn, now - 10 * 60).await?;
    store::runs::delete_finished_before(&mut conn, now - RUN_RETENTION.as_secs() as i64).await?;
    store::publish::delete_done_before(&mut conn, now - RUN_RETENTION.as_secs() as i64).await?;
    store::post_jobs::delete_finished_before(&mut conn, now - RUN_RETENTION.as_secs() as i64)
        .await?;
    Ok((sessions, throttles))
}

pub fn spawn(db: Db, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(every) => {}
            }
            match sweep_once(&db).await {
                Ok((sessions, throttles)) => {
                    tracing::debug!(sessions, throttles, "housekeeping sweep done")
                }
                Err(error) => tracing::warn!(error = %error, "housekeeping sweep failed"),
            }
        }
    });
}
