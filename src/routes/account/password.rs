//! POST /account/password: needs the current password; ends every other session.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_flash_messages::FlashMessage;
use serde::Deserialize;

use super::{current_session_id, page::render};
use crate::auth::CurrentUser;
use crate::config::Secret;
use crate::domain::NewPassword;
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::state::AppState;
use crate::store;

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

pub async fn change(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let form = form.into_inner();
    let permit = state.passwords.try_permit()?;
    let mut conn = state.db.conn().await?;
    let row = store::users::by_id(&mut conn, user.uid.get())
        .await?
        .ok_or(AppError::NotFound)?;
    drop(conn);
    let mut errors = Vec::new();
    let current_ok = state
        .passwords
        .verify(
            permit,
            Secret::new(form.current_password.clone()),
            Some(row.password_hash),
        )
        .await?;
    if !current_ok {
        errors.push((
            "current_password",
            "Current password: this is not your current password.".to_owned(),
        ));
    }
    let new = NewPassword::parse(&form.new_password);
    if let Err(message) = &new {
        errors.push(("new_password", format!("New password: {message}.")));
    } else if current_ok && form.new_password == form.current_password {
        errors.push((
            "new_password",
            "New password: must differ from the current one.".to_owned(),
        ));
    }
    let new = match new {
        Ok(new) if errors.is_empty() => new,
        _ => {
            return render(
                &req,
                &state,
                &user,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                &errors,
            )
            .await
        }
    };
    let permit = state.passwords.try_permit()?;
    let hash = state.passwords.hash(permit, new.into_secret()).await?;
    let keep = current_session_id(&req, &state);
    let mut conn = state.db.conn().await?;
    let changed =
        store::users::set_password_hash(&mut conn, user.uid.get(), &hash, row.credentials_version)
            .await?;
    if !changed {
        drop(conn);
        let message = "Current password: the password was changed in another session just now, so \
             nothing was changed here. Sign in again with the new password if you are signed out."
            .to_owned();
        return render(
            &req,
            &state,
            &user,
            None,
            StatusCode::CONFLICT,
            &[("current_password", message)],
        )
        .await;
    }
    let others =
        store::sessions::ids_for_user_except(&mut conn, user.uid.get(), keep.as_deref()).await?;
    drop(conn);
    crate::sessions::end_sessions(&state.db, &state.cache, &others).await?;
    FlashMessage::success(match others.len() {
        0 => "Password changed.".to_owned(),
        1 => "Password changed. Your other session was signed out.".to_owned(),
        n => format!("Password changed. Your {n} other sessions were signed out."),
    })
    .send();
    Ok(see_other("/account"))
}
