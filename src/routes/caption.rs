use actix_web::HttpResponse;
use actix_web_flash_messages::IncomingFlashMessages;

use super::error::AppError;
use crate::auth::CurrentUser;
use crate::web::page::Page;

/// The caption generation page. Until platform connections land it explains what comes next.
pub async fn page(
    user: CurrentUser,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    Page::new("Caption generation", Some(&user), Some(&flashes)).render("caption/generation.html")
}
