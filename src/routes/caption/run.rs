//! POST /caption_generation/start and /cancel, GET /caption_generation/status.

use actix_web::{web, HttpResponse};
use actix_web_flash_messages::FlashMessage;

use super::view_or_redirect;
use crate::auth::CurrentUser;
use crate::routes::error::AppError;
use crate::routes::platforms::actions::CsrfForm;
use crate::routes::see_other;
use crate::services::runs::{RunStatus, Started};
use crate::sessions::TypedSession;
use crate::state::AppState;

pub async fn start(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let view = view_or_redirect(&state, &session, user.uid, false).await?;
    if view.current.needs_reauth {
        FlashMessage::error(format!(
            "{} needs a new token before a run can start: the instance no longer accepts \
             fedialt's access. Connect it again on the Accounts page.",
            view.current.handle()
        ))
        .send();
        return Ok(see_other("/caption_generation"));
    }
    match state
        .runs
        .start(user.uid, view.current.id, &view.settings.settings)
        .await?
    {
        Started::Queued(_) => FlashMessage::success(format!(
            "The run has started: fedialt is looking through the posts of {} for images without \
             a description.",
            view.current.handle()
        ))
        .send(),
        Started::AlreadyActive(run) => FlashMessage::info(format!(
            "A run for {} is already going (run {run}, shown below), so no second one was \
             started. Cancel it first to start again.",
            view.current.handle()
        ))
        .send(),
    }
    Ok(see_other("/caption_generation"))
}

pub async fn cancel(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let view = view_or_redirect(&state, &session, user.uid, false).await?;
    match state.runs.cancel(user.uid, view.current.id).await? {
        Some(row) => {
            let kept = row.drafts_made + row.images_failed;
            FlashMessage::success(format!(
                "The run was cancelled. {}",
                match kept {
                    0 => "It had not drafted anything yet.".to_owned(),
                    1 => "The draft it made is kept.".to_owned(),
                    n => format!("The {n} drafts it made are kept."),
                }
            ))
            .send()
        }
        None => {
            FlashMessage::info("There was no run going, so there was nothing to cancel.").send()
        }
    }
    Ok(see_other("/caption_generation"))
}

/// The status JSON of the session's connection's current or last run.
pub async fn status(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
) -> Result<HttpResponse, AppError> {
    let platform = match session.current_platform() {
        Some(id) => Some(id),
        None => {
            let list = state.platforms.list(user.uid).await?;
            list.iter()
                .find(|p| p.is_default)
                .or(list.first())
                .map(|p| p.id)
        }
    };
    let status = match platform {
        Some(id) => state.runs.status(user.uid, id).await?,
        None => RunStatus::none(),
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(status))
}
