//! Flash messages in a signed cookie, set only when there is something to say or to clear.
//!
//! The library's cookie store answers every response without messages with a removal cookie,
//! even when the request carried none: a `Set-Cookie` header on every page, health check and
//! asset. This store sends the removal only when the request brought a flash cookie.
//!
//! The library also marks the cookie Secure always, so on plain http (a LAN address) a browser or
//! any cookie jar that honours Secure drops it and the message never shows. Here the cookie is
//! Secure exactly when the session cookie is: when FEDIALT_PUBLIC_URL is https.
//!
//! JSON routes (the status poll) leave the cookie as it is: they show no messages.

use actix_web::cookie::Cookie;
use actix_web::dev::ResponseHead;
use actix_web::http::header::{HeaderValue, SET_COOKIE};
use actix_web::HttpRequest;
use actix_web_flash_messages::storage::{
    CookieMessageStore, FlashMessageStore, LoadError, StoreError,
};
use actix_web_flash_messages::FlashMessage;

pub const FLASH_COOKIE: &str = "fedialt_flash";

pub struct QuietCookieStore {
    inner: CookieMessageStore,
    secure: bool,
}

impl QuietCookieStore {
    pub fn new(key: actix_web::cookie::Key, secure: bool) -> Self {
        QuietCookieStore {
            inner: CookieMessageStore::builder(key)
                .cookie_name(FLASH_COOKIE.to_owned())
                .build(),
            secure,
        }
    }
}

/// Sets the flash cookie's Secure attribute to `secure`, leaving every other Set-Cookie alone.
fn set_secure(response: &mut ResponseHead, secure: bool) {
    let cookies: Vec<HeaderValue> = response.headers().get_all(SET_COOKIE).cloned().collect();
    let mut changed = false;
    let rewritten: Vec<HeaderValue> = cookies
        .into_iter()
        .map(|value| {
            let parsed = value
                .to_str()
                .ok()
                .and_then(|text| Cookie::parse(text.to_owned()).ok())
                .filter(|c| c.name() == FLASH_COOKIE && c.secure().unwrap_or(false) != secure);
            match parsed {
                Some(mut cookie) => {
                    cookie.set_secure(secure);
                    changed = true;
                    HeaderValue::from_str(&cookie.to_string()).unwrap_or(value)
                }
                None => value,
            }
        })
        .collect();
    if changed {
        response.headers_mut().remove(SET_COOKIE);
        for value in rewritten {
            response.headers_mut().append(SET_COOKIE, value);
        }
    }
}

impl FlashMessageStore for QuietCookieStore {
    /// A flash cookie that does not verify (forged, truncated, from another key) is ignored, not an
    /// error: the library would answer 400 on every page until the cookie went away.
    fn load(&self, request: &HttpRequest) -> Result<Vec<FlashMessage>, LoadError> {
        match self.inner.load(request) {
            Ok(messages) => Ok(messages),
            Err(error) => {
                tracing::info!(error = %error, "ignored a flash cookie that does not verify");
                Ok(Vec::new())
            }
        }
    }

    fn store(
        &self,
        messages: &[FlashMessage],
        request: HttpRequest,
        response: &mut ResponseHead,
    ) -> Result<(), StoreError> {
        // A JSON call never shows messages, so it leaves them for the next page: the progress
        // bar's polling must not eat the message a form just left.
        let shows_none = crate::auth::user::wants_json(&request);
        if messages.is_empty() && (request.cookie(FLASH_COOKIE).is_none() || shows_none) {
            return Ok(());
        }
        self.inner.store(messages, request, response)?;
        set_secure(response, self.secure);
        Ok(())
    }
}
