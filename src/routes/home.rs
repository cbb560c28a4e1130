use actix_web::{HttpRequest, HttpResponse};

use super::see_other;
use crate::auth::user::session_user;

/// Visitors go to sign in; signed-in people to caption generation.
pub async fn index(req: HttpRequest) -> HttpResponse {
    if session_user(&req).is_some() {
        see_other("/caption_generation")
    } else {
        see_other("/login")
    }
}
