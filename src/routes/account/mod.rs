//! The person's own account: password and sessions.

pub mod page;
pub mod password;
pub mod sessions;

use actix_web::cookie::{CookieJar, Key};
use actix_web::HttpRequest;

use crate::keys::Keys;
use crate::startup::SESSION_COOKIE;

/// The table id of the request's own session, from its signed cookie.
pub fn current_session_id(req: &HttpRequest, keys: &Keys) -> Option<String> {
    let cookie = req.cookie(SESSION_COOKIE)?;
    let mut jar = CookieJar::new();
    jar.add_original(cookie);
    let key = Key::from(&keys.cookie);
    let verified = jar.signed(&key).get(SESSION_COOKIE)?;
    Some(crate::sessions::session_id(verified.value()))
}
