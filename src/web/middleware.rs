//! Security headers on every response, and a tracing span with a request id per request.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{DefaultHeaders, Next};
use actix_web::{web, Error};
use rand::Rng;
use tracing::Instrument;

use crate::state::AppState;

/// No inline script or style; the OAuth redirect to an instance is a navigation, which this allows.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CSP))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("X-Frame-Options", "DENY"))
}

/// One span per request, with a request id (also sent back as X-Request-Id). Logs method, path
/// (never the query, which may carry an OAuth code) and status; never headers or cookies.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let span = tracing::info_span!(
        "http.request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.path(),
        status = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let mut response = crate::cache::near::scope(next.call(req))
        .instrument(span.clone())
        .await?;
    let status = response.status().as_u16();
    if let Some(state) = response.request().app_data::<web::Data<AppState>>() {
        state.http.count(status);
    }
    span.record("status", status);
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request done"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}
