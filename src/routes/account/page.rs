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

#[derive(Serialize)]
struct SessionLine {
    id: String,
    created: String,
    last_seen: String,
    current: bool,
}

fn when(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
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
    let current = current_session_id(req, &state.keys);
    let mut conn = state.db.conn().await?;
    let sessions: Vec<SessionLine> = store::sessions::for_user(&mut conn, user.uid, store::now())
        .await?
        .into_iter()
        .map(|s| SessionLine {
            current: current.as_deref() == Some(s.id.as_str()),
            created: when(s.created_at),
            last_seen: when(s.last_seen_at),
            id: s.id,
        })
        .collect();
    Page::new("Your account", Some(user), flashes)
        .with("sessions", &sessions)
        .with_errors(errors)
        .render_status(status, "account/index.html")
}

pub async fn show(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    render(&req, &state, &user, Some(&flashes), StatusCode::OK, &[]).await
}
