use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::state::AppState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The database answers `SELECT 1` (else 503); Redis is ok, unavailable or disabled.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (database, redis) = tokio::join!(state.db.ping(), state.cache.ping());
    let body = json!({
        "database": if database.is_ok() { "ok" } else { "error" },
        "redis": redis,
    });
    if database.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
