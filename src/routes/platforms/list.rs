use crate::sessions::TypedSession;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::IncomingFlashMessages;
use serde::Serialize;

use super::pick_current;
use crate::auth::CurrentUser;
use crate::routes::error::AppError;
use crate::state::AppState;
use crate::web::page::Page;

#[derive(Serialize)]
struct Line {
    id: crate::domain::PlatformId,
    name: String,
    instance_url: String,
    handle: String,
    platform_type: &'static str,
    description_limit: i32,
    is_default: bool,
    is_current: bool,
    needs_reauth: bool,
    watch: crate::services::watch::WatchState,
    watch_since: String,
    last_post: String,
}

/// What the add form shows again after a refused submission (never the token).
#[derive(Serialize, Default)]
pub struct AddForm {
    pub instance_url: String,
    pub name: String,
    pub platform_type: String,
    /// The address typed into the OAuth form, kept when connecting failed.
    pub oauth_instance_url: String,
}

pub async fn render(
    state: &AppState,
    user: &CurrentUser,
    session: &TypedSession,
    flashes: Option<&IncomingFlashMessages>,
    status: StatusCode,
    form: &AddForm,
    errors: &[(&str, String)],
) -> Result<HttpResponse, AppError> {
    let list = state.platforms.list(user.uid).await?;
    let current = pick_current(&list, session).map(|p| p.id);
    let ids: Vec<crate::domain::PlatformId> = list.iter().map(|p| p.id).collect();
    let watches = state.watches.many(&ids).await?;
    let lines: Vec<Line> = list
        .iter()
        .zip(watches)
        .map(|(p, watch)| Line {
            id: p.id,
            name: p.name.clone(),
            instance_url: p.instance_url.clone(),
            handle: p.handle(),
            platform_type: p.platform_type.label(),
            description_limit: p.description_limit,
            is_default: p.is_default,
            is_current: Some(p.id) == current,
            needs_reauth: p.needs_reauth,
            watch_since: watch.since.map(crate::web::when).unwrap_or_default(),
            last_post: watch.last_post_at.map(crate::web::when).unwrap_or_default(),
            watch,
        })
        .collect();
    Page::new("Connected accounts", Some(user), flashes)
        .with("waiting", &state.waiting(user.uid).await)
        .with("platforms", &lines)
        .with("form", form)
        .with("poll_every", &crate::web::every(state.config.watch_poll))
        .with_errors(errors)
        .render_status(&state.templates, status, "platforms/index.html")
}

#[derive(serde::Deserialize)]
pub struct ShowQuery {
    /// An instance address to show in the Connect field (after a connection that failed).
    instance_url: Option<String>,
}

pub async fn show(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    flashes: IncomingFlashMessages,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, AppError> {
    let form = AddForm {
        oauth_instance_url: query.into_inner().instance_url.unwrap_or_default(),
        ..AddForm::default()
    };
    render(
        &state,
        &user,
        &session,
        Some(&flashes),
        StatusCode::OK,
        &form,
        &[],
    )
    .await
}
