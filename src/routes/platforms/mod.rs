//! /platforms: the person's Mastodon and Pixelfed connections.

pub mod actions;
pub mod add;
pub mod delete;
pub mod list;
pub mod oauth;

use crate::sessions::TypedSession;
use actix_web::HttpResponse;
use actix_web_flash_messages::FlashMessage;

use crate::auth::CurrentUser;
use crate::domain::PlatformId;
use crate::platforms::connect::{self, ConnectError, NewConnection};
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::services::platforms::PlatformRecord;
use crate::state::AppState;

/// The person's connection with this id; 404 for anyone else's (or none).
pub async fn owned(
    state: &AppState,
    user: &CurrentUser,
    id: PlatformId,
) -> Result<PlatformRecord, AppError> {
    state
        .platforms
        .get_platform_by_id(id, user.uid)
        .await?
        .ok_or(AppError::NotFound)
}

/// Connects (by token or at the end of OAuth), then works on the new connection and says what
/// happened. The instance's refusal (ConnectError::Platform) is the caller's to show its own way.
pub async fn connect_and_use(
    state: &AppState,
    session: &TypedSession,
    user: &CurrentUser,
    new: NewConnection,
) -> Result<HttpResponse, ConnectError> {
    let done = connect::connect(
        &state.instances,
        &state.secrets,
        &state.platforms,
        user.uid.get(),
        new,
    )
    .await?;
    session
        .set_current_platform(PlatformId(done.platform_id))
        .map_err(|e| ConnectError::Session(e.to_string()))?;
    let watched = !done.created
        && state
            .watches
            .get(PlatformId(done.platform_id))
            .await
            .is_ok_and(|w| w.enabled);
    if watched {
        // Its watcher may be waiting for this token.
        state.runs.wake.notify_one();
        crate::jobs::signal_new_job(&state.db).await;
    }
    FlashMessage::success(if done.created {
        format!("Connected {}.", done.handle)
    } else if watched {
        format!(
            "{} was already connected; its token is updated, and watching it for new posts goes on \
             from the last post it saw.",
            done.handle
        )
    } else {
        format!(
            "{} was already connected; its token is updated.",
            done.handle
        )
    })
    .send();
    Ok(see_other("/platforms"))
}

/// The session's chosen connection if it still exists, else the default, else the oldest.
pub fn pick_current(list: &[PlatformRecord], session: &TypedSession) -> Option<PlatformRecord> {
    let chosen = session.current_platform();
    chosen
        .and_then(|id| list.iter().find(|p| p.id == id))
        .or_else(|| list.iter().find(|p| p.is_default))
        .or_else(|| list.first())
        .cloned()
}
