use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_flash_messages::IncomingFlashMessages;
use serde::Serialize;

use super::current_session_id;
use crate::auth::CurrentUser;
use crate::routes::error::AppError;
use crate::state::AppState;
use crate::store;
use crate::web::page::Page;
use crate::web::when;

#[derive(Serialize)]
struct SessionLine {
    id: String,
    created: String,
    last_seen: String,
    current: bool,
    /// "Firefox on Linux", from the User-Agent it signed in with.
    browser: String,
    /// The address it signed in from.
    from: String,
}

/// A browser and system name people recognise, from a User-Agent header.
fn browser_of(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent.filter(|ua| !ua.is_empty()) else {
        return "Unknown browser".to_owned();
    };
    match woothee::parser::Parser::new().parse(ua) {
        Some(found) => {
            let known = |s: &str| {
                (!s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN).then(|| s.to_owned())
            };
            match (known(found.name), known(found.os)) {
                (Some(name), Some(os)) => format!("{name} on {os}"),
                (Some(name), None) => name,
                (None, Some(os)) => format!("A browser on {os}"),
                (None, None) => "Unknown browser".to_owned(),
            }
        }
        None => "Unknown browser".to_owned(),
    }
}

/// Renders /account, with form errors when a password change was refused.
pub async fn render(
    req: &HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    flashes: Option<&IncomingFlashMessages>,
    status: StatusCode,
    errors: &[(&str, String)],
) -> Result<HttpResponse, AppError> {
    let current = current_session_id(req, state);
    let mut conn = state.db.conn().await?;
    let sessions: Vec<SessionLine> =
        store::sessions::for_user(&mut conn, user.uid.get(), store::now())
            .await?
            .into_iter()
            .map(|s| SessionLine {
                current: current.as_deref() == Some(s.id.as_str()),
                created: when(s.created_at),
                last_seen: when(s.last_seen_at),
                browser: browser_of(s.user_agent.as_deref()),
                from: s
                    .signed_in_from
                    .clone()
                    .unwrap_or_else(|| "unknown".to_owned()),
                id: s.id,
            })
            .collect();
    Page::new("Your account", Some(user), flashes)
        .with("waiting", &state.waiting(user.uid).await)
        .with("sessions", &sessions)
        .with_errors(errors)
        .render_status(&state.templates, status, "account/index.html")
}

pub async fn show(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    render(&req, &state, &user, Some(&flashes), StatusCode::OK, &[]).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn browsers_are_named_in_words() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        assert_eq!(super::browser_of(Some(firefox)), "Firefox on Linux");
        assert_eq!(super::browser_of(None), "Unknown browser");
        assert_eq!(super::browser_of(Some("")), "Unknown browser");
        assert!(!super::browser_of(Some("curl/8.0")).is_empty());
    }
}
