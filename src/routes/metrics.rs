//! GET /metrics: Prometheus text. For admins, or with FEDIALT_METRICS_TOKEN as a bearer token.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::csrf::tokens_match;
use crate::auth::user::session_user;
use crate::cache::{Kind, RedisStatus};
use crate::state::AppState;

pub async fn show(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let by_token = match (&state.config.metrics_token, bearer) {
        (Some(expected), Some(given)) => tokens_match(expected.expose(), given),
        _ => false,
    };
    if !by_token {
        match session_user(&req) {
            Some(user) if user.is_admin() => {}
            Some(_) => return HttpResponse::Forbidden().body("Metrics are for administrators.\n"),
            None => {
                return HttpResponse::Unauthorized()
                    .insert_header(("WWW-Authenticate", "Bearer"))
                    .body("Sign in as an administrator, or send FEDIALT_METRICS_TOKEN as a bearer token.\n")
            }
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(render(&state))
}

fn render(state: &AppState) -> String {
    let stats = state.cache.stats();
    let mut out = String::new();
    let per_kind = [
        (
            "fedialt_cache_hits_total",
            "Values served from Redis.",
            &stats.hits,
        ),
        (
            "fedialt_cache_near_hits_total",
            "The part of the hits served from process memory, kept fresh by Redis's invalidations.",
            &stats.near_hits,
        ),
        (
            "fedialt_cache_misses_total",
            "Reads that found nothing usable in Redis.",
            &stats.misses,
        ),
        (
            "fedialt_cache_fallbacks_total",
            "Reads served by the database because Redis failed.",
            &stats.fallbacks,
        ),
        (
            "fedialt_cache_outbox_retries_total",
            "Invalidations delivered to Redis from the outbox.",
            &stats.outbox_retries,
        ),
    ];
    for (name, help, counters) in per_kind {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for kind in Kind::ALL {
            let _ = writeln!(
                out,
                "{name}{{kind=\"{}\"}} {}",
                kind.label(),
                counters[kind.index()].load(Ordering::Relaxed)
            );
        }
    }
    let totals = [
        (
            "fedialt_redis_commands_total",
            "Redis commands sent.",
            stats.commands.load(Ordering::Relaxed),
        ),
        (
            "fedialt_redis_round_trips_total",
            "Redis round trips.",
            stats.round_trips.load(Ordering::Relaxed),
        ),
        (
            "fedialt_redis_breaker_trips_total",
            "Times Redis was found unreachable.",
            stats.breaker_trips.load(Ordering::Relaxed),
        ),
        (
            "fedialt_db_statements_total",
            "SQL statements run for requests.",
            state.db.stats().statements.load(Ordering::Relaxed),
        ),
        (
            "fedialt_db_background_statements_total",
            "SQL statements run by background tasks (outbox drain, sweep).",
            state.background.stats().statements.load(Ordering::Relaxed),
        ),
        (
            "fedialt_db_checkouts_total",
            "Database connections checked out.",
            state.db.stats().checkouts.load(Ordering::Relaxed),
        ),
        (
            "fedialt_db_breaker_trips_total",
            "Times the database was found away (its breaker opened).",
            state.db.breaker().trips(),
        ),
    ];
    for (name, help, value) in totals {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let name = "fedialt_http_responses_total";
    let _ = writeln!(
        out,
        "# HELP {name} HTTP responses, by status class.\n# TYPE {name} counter"
    );
    for (class, counter) in crate::state::HttpStats::CLASSES
        .iter()
        .zip(&state.http.responses)
    {
        let _ = writeln!(
            out,
            "{name}{{class=\"{class}\"}} {}",
            counter.load(Ordering::Relaxed)
        );
    }
    let up = match state.cache.status() {
        RedisStatus::Ok => 1,
        _ => 0,
    };
    let _ = writeln!(out, "# HELP fedialt_redis_up Whether Redis is trusted now.\n# TYPE fedialt_redis_up gauge\nfedialt_redis_up {up}");
    let breaker = state.db.breaker();
    let _ = writeln!(
        out,
        "# HELP fedialt_db_breaker_open_seconds_total Time the database breaker has been open.\n# TYPE fedialt_db_breaker_open_seconds_total counter\nfedialt_db_breaker_open_seconds_total {:.3}\n# HELP fedialt_db_up Whether the database is answering (its breaker is closed).\n# TYPE fedialt_db_up gauge\nfedialt_db_up {}",
        breaker.open_seconds(),
        u8::from(!breaker.is_open())
    );
    let (near_on, near_entries) = state.cache.near_status();
    let _ = writeln!(
        out,
        "# HELP fedialt_near_cache_on Whether reads are served from process memory now.\n# TYPE fedialt_near_cache_on gauge\nfedialt_near_cache_on {}\n# HELP fedialt_near_cache_entries Values held in process memory.\n# TYPE fedialt_near_cache_entries gauge\nfedialt_near_cache_entries {near_entries}",
        u8::from(near_on)
    );
    out
}
