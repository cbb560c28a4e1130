//! Flash messages in a signed cookie, set only when there is something to say or to clear.
//!
//! The library's cookie store answers every response without messages with a removal cookie,
//! even when the request carried none: a `Set-Cookie` header on every page, health check and
//! asset. This store sends the removal only when the request brought a flash cookie.

use actix_web::dev::ResponseHead;
use actix_web::HttpRequest;
use actix_web_flash_messages::storage::{
    CookieMessageStore, FlashMessageStore, LoadError, StoreError,
};
use actix_web_flash_messages::FlashMessage;

pub const FLASH_COOKIE: &str = "fedialt_flash";

pub struct QuietCookieStore {
    inner: CookieMessageStore,
}

impl QuietCookieStore {
    pub fn new(key: actix_web::cookie::Key) -> Self {
        QuietCookieStore {
            inner: CookieMessageStore::builder(key)
                .cookie_name(FLASH_COOKIE.to_owned())
                .build(),
        }
    }
}

impl FlashMessageStore for QuietCookieStore {
    fn load(&self, request: &HttpRequest) -> Result<Vec<FlashMessage>, LoadError> {
        self.inner.load(request)
    }

    fn store(
        &self,
        messages: &[FlashMessage],
        request: HttpRequest,
        response: &mut ResponseHead,
    ) -> Result<(), StoreError> {
        if messages.is_empty() && request.cookie(FLASH_COOKIE).is_none() {
            return Ok(());
        }
        self.inner.store(messages, request, response)
    }
}
