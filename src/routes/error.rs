//! Errors become responses here, and only here. The cause chain goes to the log once; people see a
//! clear message and never a stack or a secret.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

pub use crate::error::AppError;

/// What people read while the database is away.
pub const UNAVAILABLE: &str =
    "fedialt's database is not answering right now; the service is probably \
     restarting. Nothing was saved. Please try again in a few seconds.";
/// Retry-After while the database is away: the breaker's probe tries every quarter second.
pub const RETRY_AFTER_SECS: &str = "2";

pub fn error_page(status: StatusCode, heading: &str, message: &str) -> HttpResponse {
    error_page_with_link(status, heading, message, None)
}

/// An error page to show. Errors become responses where the app's templates are not at hand
/// (`ResponseError` has no request), so the response carries the page, with a plain fallback body,
/// and the `error_shapes` middleware, which has the templates, renders it on the way out.
#[derive(Clone, Debug)]
pub struct ErrorPage {
    status: StatusCode,
    heading: String,
    message: String,
    link: Option<(String, String)>,
}

impl ErrorPage {
    /// The page with the app's layout.
    pub fn render(&self, tera: &tera::Tera) -> String {
        let mut context = tera::Context::new();
        context.insert("link_href", &self.link.as_ref().map(|l| &l.0));
        context.insert("link_text", &self.link.as_ref().map(|l| &l.1));
        context.insert("title", &self.heading);
        context.insert("heading", &self.heading);
        context.insert("message", &self.message);
        context.insert("status", &self.status.as_u16());
        context.insert("flashes", &Vec::<String>::new());
        crate::web::templates::render(tera, "errors/error.html", &context)
            .unwrap_or_else(|_| self.fallback())
    }

    /// The page without the templates: plain, escaped.
    fn fallback(&self) -> String {
        let escape = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        format!(
            "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{h}</title><h1>{h}</h1><p>{m}</p>",
            h = escape(&self.heading),
            m = escape(&self.message)
        )
    }
}

/// An error page that also offers the way on: (href, text).
pub fn error_page_with_link(
    status: StatusCode,
    heading: &str,
    message: &str,
    link: Option<(&str, &str)>,
) -> HttpResponse {
    let page = ErrorPage {
        status,
        heading: heading.to_owned(),
        message: message.to_owned(),
        link: link.map(|(h, t)| (h.to_owned(), t.to_owned())),
    };
    let mut response = HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(page.fallback());
    response.extensions_mut().insert(page);
    response
}

/// Renders the error page `response` carries, with the app's templates; other responses pass.
pub fn render_carried(tera: &tera::Tera, response: HttpResponse) -> HttpResponse {
    let Some(page) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };
    let mut rendered = HttpResponse::build(response.status()).body(page.render(tera));
    for (name, value) in response.headers() {
        rendered.headers_mut().append(name.clone(), value.clone());
    }
    rendered
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::SignInRequired { .. } => StatusCode::SEE_OTHER,
            AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) | AppError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Redirect(_) => StatusCode::SEE_OTHER,
            AppError::Json { status, .. } => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            AppError::SignInRequired { next } => {
                let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
                HttpResponse::SeeOther()
                    .insert_header(("Location", format!("/login?next={next}")))
                    .finish()
            }
            AppError::Redirect(location) => crate::routes::see_other(location),
            AppError::Json { status, body } => HttpResponse::build(*status).json(body),
            AppError::Unauthenticated => HttpResponse::Unauthorized()
                .json(serde_json::json!({"error": "Sign in first: this call needs a signed-in session."})),
            AppError::Forbidden(message) => error_page(StatusCode::FORBIDDEN, "Not allowed", message),
            AppError::Csrf => error_page(
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form did not carry a valid security token, so nothing was changed. This happens \
                 when a page was open for a long time, after signing in again elsewhere, or when another \
                 site tried to submit it. Go back, reload the page and try again.",
            ),
            AppError::NotFound => error_page(
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing here, or it belongs to someone else.",
            ),
            AppError::TooManyRequests { retry_after, message } => {
                let mut response = error_page(StatusCode::TOO_MANY_REQUESTS, "Too many attempts", message);
                if let Ok(v) = retry_after.to_string().parse() {
                    response.headers_mut().insert(actix_web::http::header::RETRY_AFTER, v);
                }
                response
            }
            AppError::Busy(message) => {
                let mut response = error_page(StatusCode::SERVICE_UNAVAILABLE, "Busy right now", message);
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from_static("1"),
                );
                response
            }
            AppError::Unavailable(cause) => {
                tracing::warn!(error = %cause, cause = ?std::error::Error::source(cause).map(|s| s.to_string()), "database unavailable");
                let mut response = error_page(StatusCode::SERVICE_UNAVAILABLE, "Restarting", UNAVAILABLE);
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                response
            }
            AppError::Internal(cause) => {
                tracing::error!(error = %cause, chain = %format!("{cause:#}"), "request failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "fedialt hit an unexpected error. Nothing was lost; please try again. If it keeps \
                     happening, the server log has the details.",
                )
            }
        }
    }
}

/// The fallback for routes that do not exist.
pub async fn not_found() -> HttpResponse {
    AppError::NotFound.error_response()
}
