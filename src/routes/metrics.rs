//! GET /metrics: Prometheus text. For admins, or with FEDIALT_METRICS_TOKEN as a bearer token.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

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

/// A counter per cache kind: (name, help, (kind, value) for each kind).
type PerKind = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// Everything /metrics shows, read at scrape time from the app's own counters and encoded by
/// prometheus-client in the Prometheus text format (counters get their `_total` there).
#[derive(Debug)]
struct Snapshot {
    per_kind: Vec<PerKind>,
    counters: Vec<(&'static str, &'static str, u64)>,
    open_seconds: f64,
    responses: Vec<(&'static str, u64)>,
    gauges: Vec<(&'static str, &'static str, i64)>,
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, values) in &self.per_kind {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (kind, value) in values {
                let labels = [("kind", *kind)];
                ConstCounter::new(*value).encode(metric.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in &self.counters {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(*value).encode(metric)?;
        }
        let metric = encoder.encode_descriptor(
            "fedialt_db_breaker_open_seconds",
            "Time the database breaker has been open.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.open_seconds).encode(metric)?;
        let mut metric = encoder.encode_descriptor(
            "fedialt_http_responses",
            "HTTP responses, by status class.",
            None,
            MetricType::Counter,
        )?;
        for (class, value) in &self.responses {
            let labels = [("class", *class)];
            ConstCounter::new(*value).encode(metric.encode_family(&labels)?)?;
        }
        for (name, help, value) in &self.gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(*value).encode(metric)?;
        }
        Ok(())
    }
}

fn render(state: &AppState) -> String {
    let stats = state.cache.stats();
    let by_kind = |counters: &[std::sync::atomic::AtomicU64]| -> Vec<(&'static str, u64)> {
        Kind::ALL
            .iter()
            .map(|kind| (kind.label(), counters[kind.index()].load(Ordering::Relaxed)))
            .collect()
    };
    let breaker = state.db.breaker();
    let (near_on, near_entries) = state.cache.near_status();
    let snapshot = Snapshot {
        per_kind: vec![
            ("fedialt_cache_hits", "Values served from Redis.", by_kind(&stats.hits)),
            (
                "fedialt_cache_near_hits",
                "The part of the hits served from process memory, kept fresh by Redis's invalidations.",
                by_kind(&stats.near_hits),
            ),
            ("fedialt_cache_misses", "Reads that found nothing usable in Redis.", by_kind(&stats.misses)),
            ("fedialt_cache_fallbacks", "Reads served by the database because Redis failed.", by_kind(&stats.fallbacks)),
            (
                "fedialt_cache_outbox_retries",
                "Invalidations delivered to Redis from the outbox.",
                by_kind(&stats.outbox_retries),
            ),
        ],
        counters: vec![
            ("fedialt_redis_commands", "Redis commands sent.", stats.commands.load(Ordering::Relaxed)),
            ("fedialt_redis_round_trips", "Redis round trips.", stats.round_trips.load(Ordering::Relaxed)),
            (
                "fedialt_redis_breaker_trips",
                "Times Redis was found unreachable.",
                stats.breaker_trips.load(Ordering::Relaxed),
            ),
            (
                "fedialt_db_statements",
                "SQL statements run for requests.",
                state.db.stats().statements.load(Ordering::Relaxed),
            ),
            (
                "fedialt_db_background_statements",
                "SQL statements run by background tasks (outbox drain, sweep).",
                state.background.stats().statements.load(Ordering::Relaxed),
            ),
            (
                "fedialt_db_checkouts",
                "Database connections checked out.",
                state.db.stats().checkouts.load(Ordering::Relaxed),
            ),
            (
                "fedialt_db_breaker_trips",
                "Times the database was found away (its breaker opened).",
                breaker.trips(),
            ),
        ],
        open_seconds: breaker.open_seconds(),
        responses: crate::state::HttpStats::CLASSES
            .iter()
            .zip(&state.http.responses)
            .map(|(class, counter)| (*class, counter.load(Ordering::Relaxed)))
            .collect(),
        gauges: vec![
            (
                "fedialt_redis_up",
                "Whether Redis is trusted now.",
                i64::from(state.cache.status() == RedisStatus::Ok),
            ),
            (
                "fedialt_db_up",
                "Whether the database is answering (its breaker is closed).",
                i64::from(!breaker.is_open()),
            ),
            (
                "fedialt_near_cache_on",
                "Whether reads are served from process memory now.",
                i64::from(near_on),
            ),
            (
                "fedialt_near_cache_entries",
                "Values held in process memory.",
                near_entries as i64,
            ),
        ],
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would mean a bad metric name.
    if let Err(error) = prometheus_text::encode(&mut out, &registry) {
        tracing::error!(error = %error, "could not encode the metrics");
    }
    out
}
