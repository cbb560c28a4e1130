//! POST /account/sessions/{id}/end: end one of your own sessions.

use actix_web::{web, HttpResponse};
use actix_web_flash_messages::FlashMessage;
use serde::Deserialize;

use crate::auth::CurrentUser;
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::state::AppState;
use crate::store;

#[derive(Deserialize)]
pub struct EndForm {
    #[serde(default)]
    csrf_token: String,
}

pub async fn end(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<EndForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let id = path.into_inner();
    // A session's id is the hex SHA-256 of its key; anything else names no session.
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AppError::NotFound);
    }
    let mut conn = state.db.conn().await?;
    let mine = store::sessions::live(&mut conn, &id, store::now(), state.config.session_limits())
        .await?
        .is_some_and(|s| s.user_id == Some(user.uid.get()));
    drop(conn);
    if !mine {
        return Err(AppError::NotFound);
    }
    crate::sessions::end_sessions(&state.db, &state.cache, &[id]).await?;
    FlashMessage::success("That session was ended; it is signed out.").send();
    Ok(see_other("/account"))
}
