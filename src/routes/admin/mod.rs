//! The admin area: the overview (/admin), people (users.rs), every run (runs.rs), the caption
//! defaults (settings.rs) and the audit log (users.rs).

pub mod runs;
pub mod settings;
pub mod users;

use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use actix_web_flash_messages::IncomingFlashMessages;
use serde::Serialize;

use super::error::AppError;
use crate::auth::AdminUser;
use crate::cache::RedisStatus;
use crate::state::AppState;
use crate::store;
use crate::web::page::Page;

#[derive(Serialize)]
struct Overview {
    people: i64,
    active_people: i64,
    admins: i64,
    connections: i64,
    queued: i64,
    running: i64,
    failed: i64,
    drafts_waiting: i64,
    watched: i64,
    new_posts_queued: i64,
    database: &'static str,
    redis: &'static str,
    redis_used: bool,
    /// Cached reads served from Redis or memory, of all cached reads, since start (percent).
    hit_rate: Option<f64>,
    fallbacks: u64,
    near_hits: u64,
}

/// The admin area's front page: the numbers an admin checks first.
pub async fn index(
    admin: AdminUser,
    state: web::Data<AppState>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let mut conn = state.db.conn().await?;
    let people = store::users::list(&mut conn).await?;
    let connections = store::platforms::count(&mut conn).await?;
    let runs = store::runs::counts(&mut conn).await?;
    let drafts_waiting = store::drafts::count_in_state(&mut conn, store::drafts::PENDING).await?;
    let watched = store::watches::count_enabled(&mut conn).await?;
    let new_posts_queued = store::post_jobs::count_queued(&mut conn).await?;
    drop(conn);
    let run_count = |s: &str| runs.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let stats = state.cache.stats();
    let sum = |list: &[std::sync::atomic::AtomicU64]| -> u64 {
        list.iter().map(|n| n.load(Ordering::Relaxed)).sum()
    };
    let (hits, misses) = (sum(&stats.hits), sum(&stats.misses));
    let overview = Overview {
        people: people.len() as i64,
        active_people: people.iter().filter(|u| u.active).count() as i64,
        admins: people
            .iter()
            .filter(|u| u.active && u.role == "admin")
            .count() as i64,
        connections,
        queued: run_count("queued"),
        running: run_count("running"),
        failed: run_count("failed"),
        drafts_waiting,
        watched,
        new_posts_queued,
        // This page read the database just now.
        database: "ok",
        redis_used: state.cache.status() != RedisStatus::Disabled,
        redis: match state.cache.status() {
            RedisStatus::Ok => "ok",
            RedisStatus::Unavailable => "unavailable (fedialt is working from the database)",
            RedisStatus::Disabled => "not used (REDIS_URL=none)",
        },
        hit_rate: (hits + misses > 0).then(|| 100.0 * hits as f64 / (hits + misses) as f64),
        fallbacks: sum(&stats.fallbacks),
        near_hits: sum(&stats.near_hits),
    };
    Page::new("Administration", Some(&admin), Some(&flashes))
        .with("o", &overview)
        .render(&state.templates, "admin/index.html")
}
