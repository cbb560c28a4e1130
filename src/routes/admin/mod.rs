pub mod runs;
pub mod settings;
pub mod users;

use actix_web::{web, HttpResponse};
use actix_web_flash_messages::IncomingFlashMessages;
use serde::Serialize;

use super::error::AppError;
use crate::auth::AdminUser;
use crate::state::AppState;
use crate::store;
use crate::web::page::Page;

#[derive(Serialize)]
struct UserLine {
    id: i64,
    username: String,
    email: String,
    role: String,
    active: bool,
}

/// The admin area's front page: the people with an account.
pub async fn index(
    admin: AdminUser,
    state: web::Data<AppState>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let mut conn = state.db.conn().await?;
    let users: Vec<UserLine> = store::users::list(&mut conn)
        .await?
        .into_iter()
        .map(|u| UserLine {
            id: u.id,
            username: u.username,
            email: u.email,
            role: u.role,
            active: u.active,
        })
        .collect();
    Page::new("Administration", Some(&admin), Some(&flashes))
        .with("users", &users)
        .render(&state.templates, "admin/index.html")
}
