//! POST /logout: the session ends everywhere, Redis included (through the outbox if it is away).

use crate::sessions::TypedSession;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::FlashMessage;
use serde::Deserialize;

use crate::auth::CurrentUser;
use crate::routes::error::AppError;
use crate::routes::see_other;

#[derive(Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf_token: String,
}

pub async fn submit(
    user: CurrentUser,
    session: TypedSession,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    session.end();
    FlashMessage::info("You are signed out.").send();
    tracing::info!(user.id = user.uid.get(), "signed out");
    Ok(see_other("/login"))
}
