//! The person's own account: password and sessions.

pub mod page;
pub mod password;
pub mod sessions;

use actix_web::cookie::{CookieJar, Key};
use actix_web::HttpRequest;

use crate::startup::session_cookie_name;
use crate::state::AppState;

/// The table id of the request's own session, from its signed cookie.
pub fn current_session_id(req: &HttpRequest, state: &AppState) -> Option<String> {
    let name = session_cookie_name(state.config.secure_cookies());
    let cookie = req.cookie(name)?;
    let mut jar = CookieJar::new();
    jar.add_original(cookie);
    let key = Key::from(&state.keys.cookie);
    let verified = jar.signed(&key).get(name)?;
    Some(crate::sessions::session_id(verified.value()))
}
