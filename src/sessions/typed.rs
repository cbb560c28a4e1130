//! The session as the routes use it: typed accessors for what it holds (the signed-in person, the
//! connection being worked on, an OAuth connection in progress), instead of string keys and
//! `session.get::<i64>(…)` in every route (zero2prod's TypedSession).

use std::future::{ready, Ready};

use actix_session::{Session, SessionExt, SessionInsertError};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Client, AUTH_KEY, CLIENT_KEY, CURRENT_PLATFORM_KEY, OAUTH_KEY};
use crate::auth::SessionUser;
use crate::domain::PlatformId;

#[derive(Clone)]
pub struct TypedSession(Session);

impl TypedSession {
    pub fn of(req: &HttpRequest) -> TypedSession {
        TypedSession(req.get_session())
    }

    /// The signed-in person, if any.
    pub fn user(&self) -> Option<SessionUser> {
        self.0.get::<SessionUser>(AUTH_KEY).ok().flatten()
    }

    /// Signs `user` in: a new session id, and nothing from before survives it (a pending OAuth
    /// state, another person's choices).
    pub fn start(&self, user: &SessionUser, client: &Client) -> Result<(), SessionInsertError> {
        self.0.clear();
        self.0.renew();
        self.0.insert(AUTH_KEY, user)?;
        self.0.insert(CLIENT_KEY, client)
    }

    /// Ends the session for good (sign-out).
    pub fn end(&self) {
        self.0.purge();
    }

    /// The platform connection the person chose to work on, if they chose one.
    pub fn current_platform(&self) -> Option<PlatformId> {
        self.0
            .get::<PlatformId>(CURRENT_PLATFORM_KEY)
            .ok()
            .flatten()
    }

    pub fn set_current_platform(&self, platform_id: PlatformId) -> Result<(), SessionInsertError> {
        self.0.insert(CURRENT_PLATFORM_KEY, platform_id)
    }

    /// Forgets the chosen connection (it is gone); with `only`, only if it is that one.
    pub fn forget_current_platform(&self, only: Option<PlatformId>) {
        if only.is_none() || self.current_platform() == only {
            self.0.remove(CURRENT_PLATFORM_KEY);
        }
    }

    /// Remembers an OAuth connection in progress.
    pub fn set_pending_oauth<T: Serialize>(&self, pending: &T) -> Result<(), SessionInsertError> {
        self.0.insert(OAUTH_KEY, pending)
    }

    /// Takes the OAuth connection in progress out: each is good for one answer.
    pub fn take_pending_oauth<T: DeserializeOwned>(&self) -> Option<T> {
        self.0
            .remove(OAUTH_KEY)
            .and_then(|raw| serde_json::from_str(&raw).ok())
    }
}

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<TypedSession, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(TypedSession::of(req)))
    }
}
