//! The caption generation page, the settings form and its save, and the JSON settings API.

pub mod api;
pub mod page;
pub mod run;
pub mod settings;

use crate::sessions::TypedSession;
use actix_web_flash_messages::FlashMessage;

use crate::routes::error::AppError;
use crate::services::settings::CaptionView;
use crate::state::AppState;

/// The view for the session's connection; when there is none yet or the chosen one is gone, a
/// redirect to /platforms (with a message saying why).
pub async fn view_or_redirect(
    state: &AppState,
    session: &TypedSession,
    user_id: crate::domain::UserId,
    with_run: bool,
) -> Result<CaptionView, AppError> {
    let chosen = session.current_platform();
    let runs = with_run.then_some(&state.runs);
    let Some(view) = state.settings.caption_view(user_id, chosen, runs).await? else {
        FlashMessage::info("Connect a Mastodon or Pixelfed account first: fedialt describes the images posted there.").send();
        return Err(AppError::Redirect("/platforms".into()));
    };
    if chosen.is_some_and(|id| id != view.current.id) {
        session.forget_current_platform(None);
        FlashMessage::warning(
            "The account you were working on is no longer connected. Choose one to work on.",
        )
        .send();
        return Err(AppError::Redirect("/platforms".into()));
    }
    Ok(view)
}
