//! Deleting a connection: a confirmation page that says what goes with it, then the delete.

use crate::sessions::TypedSession;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::{FlashMessage, IncomingFlashMessages};

use super::actions::CsrfForm;
use crate::auth::CurrentUser;
use crate::domain::PlatformId;
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::state::AppState;
use crate::store;
use crate::web::page::Page;

pub async fn confirm(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<PlatformId>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let platform = super::owned(&state, &user, path.into_inner()).await?;
    Page::new("Remove an account", Some(&user), Some(&flashes))
        .with("waiting", &state.waiting(user.uid).await)
        .with("platform", &platform)
        .with("handle", &platform.handle())
        .render(&state.templates, "platforms/delete.html")
}

pub async fn delete(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<PlatformId>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let id = path.into_inner();
    let uid = user.uid;
    let platform = super::owned(&state, &user, id).await?;
    let deleted = state
        .platforms
        .write(
            uid,
            // Its settings and its runs' progress go with it (the runs and drafts by cascade).
            vec![
                crate::cache::keys::Key::settings(id),
                crate::cache::keys::Key::progress(id),
                crate::cache::keys::Key::watch(id),
            ],
            move |conn| {
                Box::pin(async move {
                    let deleted = store::platforms::delete(conn, id.get(), uid.get()).await?;
                    store::platforms::ensure_default(conn, uid.get()).await?;
                    Ok(deleted)
                })
            },
        )
        .await?;
    if !deleted {
        return Err(AppError::NotFound);
    }
    // Its drafts went: the navigation's count changes.
    state.runs.waiting.changed(uid).await;
    session.forget_current_platform(Some(id));
    FlashMessage::success(format!("{} was removed from fedialt.", platform.handle())).send();
    Ok(see_other("/platforms"))
}
