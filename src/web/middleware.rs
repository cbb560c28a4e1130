//! Security headers on every response, and a tracing span with a request id per request.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER};
use actix_web::middleware::{DefaultHeaders, ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, Error, ResponseError};
use rand::Rng;
use tracing::Instrument;

use crate::state::AppState;

/// No inline script or style; the OAuth redirect to an instance is a navigation, which this allows.
pub const CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; \
connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The security headers of every response. `https`: people reach the app over https
/// (FEDIALT_PUBLIC_URL), so browsers are told to keep to it.
fn security_header_list(https: bool) -> Vec<(&'static str, &'static str)> {
    let mut list = vec![
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
    ];
    if https {
        list.push(("strict-transport-security", "max-age=31536000"));
    }
    list
}

pub fn security_headers(https: bool) -> DefaultHeaders {
    security_header_list(https)
        .into_iter()
        .fold(DefaultHeaders::new(), |headers, header| headers.add(header))
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
    // The progress bar's poll (every second or two per open page) is logged only at debug level,
    // unless it fails.
    let quiet = req.path() == "/caption_generation/status";
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let mut response = match crate::cache::near::scope(next.call(req))
        .instrument(span.clone())
        .await
    {
        Ok(response) => response,
        Err(error) => {
            // An answer made as an error (session_failures): counted and logged all the same.
            let status = error.as_response_error().status_code().as_u16();
            if let Some(state) = &state {
                state.http.count(status);
            }
            span.in_scope(|| {
                tracing::info!(
                    status,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "request done"
                )
            });
            return Err(error);
        }
    };
    let status = response.status().as_u16();
    if let Some(state) = response.request().app_data::<web::Data<AppState>>() {
        state.http.count(status);
    }
    span.record("status", status);
    let elapsed_ms = started.elapsed().as_millis() as u64;
    span.in_scope(|| {
        if quiet && status < 400 {
            tracing::debug!(status, elapsed_ms, "request done")
        } else {
            tracing::info!(status, elapsed_ms, "request done")
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}

/// Errors that actix-web answers by itself (an id that is not a number, a malformed form, a body
/// too large, a method a route does not take) come as plain text. This gives them the app's own
/// shape: the error page, or JSON on JSON routes. Responses the app made itself pass untouched.
pub fn error_shapes<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new()
        .default_handler_client(reshape)
        .default_handler_server(server_json)
}

/// An error page the response carries (see routes::error::ErrorPage), rendered with the app's
/// templates; None when there is none.
fn with_rendered_page<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> Result<ServiceResponse<EitherBody<B>>, ServiceResponse<B>> {
    let carries = res
        .response()
        .extensions()
        .contains::<crate::routes::error::ErrorPage>();
    let Some(state) = res.request().app_data::<web::Data<AppState>>().cloned() else {
        return Err(res);
    };
    if !carries {
        return Err(res);
    }
    let (req, original) = res.into_parts();
    let original = original.map_into_boxed_body();
    let rendered = crate::routes::error::render_carried(&state.templates, original);
    Ok(ServiceResponse::new(req, rendered).map_into_right_body())
}

/// A 5xx page on a JSON route becomes JSON with the same status (and Retry-After); on other
/// routes the page is rendered.
fn server_json<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let html = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if !html || !crate::auth::user::wants_json(res.request()) {
        return Ok(ErrorHandlerResponse::Response(
            with_rendered_page(res).unwrap_or_else(|res| res.map_into_left_body()),
        ));
    }
    let status = res.status();
    let message = if status == actix_web::http::StatusCode::SERVICE_UNAVAILABLE {
        crate::routes::error::UNAVAILABLE
    } else {
        "fedialt hit an unexpected error. Nothing was lost; please try again."
    };
    let (req, original) = res.into_parts();
    let mut replacement =
        actix_web::HttpResponse::build(status).json(serde_json::json!({ "error": message }));
    if let Some(value) = original.headers().get(RETRY_AFTER) {
        replacement.headers_mut().insert(RETRY_AFTER, value.clone());
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, replacement).map_into_right_body(),
    ))
}

fn reshape<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let ours = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html") || ct.starts_with("application/json"));
    let status = res.status();
    // 401 and 403 plain text are the app's own (/metrics answers scripts that way).
    if ours
        || !matches!(
            status.as_u16(),
            400 | 404 | 405 | 411 | 413 | 414 | 415 | 431
        )
    {
        return Ok(ErrorHandlerResponse::Response(
            with_rendered_page(res).unwrap_or_else(|res| res.map_into_left_body()),
        ));
    }
    let (heading, message) = match status.as_u16() {
        404 => (
            "Page not found",
            "There is nothing here, or it belongs to someone else.",
        ),
        405 => (
            "Not available this way",
            "This address does not take that kind of request. Nothing was changed.",
        ),
        413 => (
            "Too large",
            "The request was larger than fedialt accepts. Nothing was changed.",
        ),
        415 => (
            "Unsupported format",
            "The request's body is not in a format this address takes. Nothing was changed.",
        ),
        _ => (
            "The request could not be read",
            "Something in the request was malformed (a field, a value or the address), so \
             nothing was changed. Go back, reload the page and try again.",
        ),
    };
    let (req, original) = res.into_parts();
    let mut replacement = if crate::auth::user::wants_json(&req) {
        actix_web::HttpResponse::build(status).json(serde_json::json!({ "error": message }))
    } else {
        let page = crate::routes::error::error_page(status, heading, message);
        match req.app_data::<web::Data<AppState>>() {
            Some(state) => crate::routes::error::render_carried(&state.templates, page),
            None => page,
        }
    };
    for name in [ALLOW, RETRY_AFTER] {
        if let Some(value) = original.headers().get(&name) {
            replacement.headers_mut().insert(name, value.clone());
        }
    }
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, replacement).map_into_right_body(),
    ))
}

/// The session middleware answers a failure of its store (the database away while a session is
/// read or written) with an empty 500 of its own, past every handler. This sits just outside it
/// and gives such a failure the app's shape: while the database breaker is open, the 503 page (or
/// JSON) saying the service is restarting and nothing was saved; otherwise the 500 page. The
/// answer travels as an error (the request itself is no longer at hand), so the headers the outer
/// middleware would add are added here.
pub async fn session_failures(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let json = crate::auth::user::wants_json(req.request());
    let error = match next.call(req).await {
        Ok(response) => return Ok(response),
        Err(error) => error,
    };
    let away = state.as_ref().is_some_and(|s| s.db.breaker().is_open());
    let mut response = if away {
        tracing::warn!(error = %error, "the session could not be read or saved: the database is away");
        if json {
            let mut response = actix_web::HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "error": crate::routes::error::UNAVAILABLE }));
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from_static(crate::routes::error::RETRY_AFTER_SECS),
            );
            response
        } else {
            crate::routes::error::AppError::Unavailable(crate::store::StoreError::Unavailable(
                "the session store".into(),
            ))
            .error_response()
        }
    } else {
        tracing::error!(error = %error, "the session could not be read or saved");
        crate::routes::error::AppError::Internal(anyhow::anyhow!("session store: {error}"))
            .error_response()
    };
    if let Some(state) = &state {
        response = crate::routes::error::render_carried(&state.templates, response);
    }
    let https = state.as_ref().is_some_and(|s| s.config.secure_cookies());
    for (name, value) in security_header_list(https) {
        response.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    Err(actix_web::error::InternalError::from_response(error.to_string(), response).into())
}
