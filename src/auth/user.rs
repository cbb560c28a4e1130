//! Who is asking. The signed-in person is read from the session alone (no SQL on a page view):
//! sign-in puts their id, name, role and CSRF token there; changing any of those ends their sessions.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionUser {
    pub uid: crate::domain::UserId,
    pub username: String,
    pub role: String,
    pub csrf: String,
    /// The credentials version the sign-in checked (see store::users::still_signed_in_as).
    #[serde(default)]
    pub cv: i64,
}

impl SessionUser {
    pub fn is_admin(&self) -> bool {
        self.role == "admin"
    }
}

/// A signed-in person. Visitors get 303 to /login?next=… on pages, 401 JSON on JSON routes.
#[derive(Clone, Debug)]
pub struct CurrentUser(pub SessionUser);

impl std::ops::Deref for CurrentUser {
    type Target = SessionUser;
    fn deref(&self) -> &SessionUser {
        &self.0
    }
}

impl CurrentUser {
    /// The CSRF check, after the sign-in check: a form's hidden csrf_token, or the X-CSRF-Token
    /// header of a JSON call.
    pub fn check_csrf(&self, given: &str) -> Result<(), AppError> {
        if crate::auth::csrf::tokens_match(&self.csrf, given) {
            Ok(())
        } else {
            Err(AppError::Csrf)
        }
    }

    pub fn check_csrf_header(&self, req: &HttpRequest) -> Result<(), AppError> {
        let given = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.check_csrf(given)
    }
}

/// Routes that answer JSON get 401 JSON instead of a redirect.
pub fn wants_json(req: &HttpRequest) -> bool {
    let path = req.path();
    path.starts_with("/api/") || path.ends_with("/status")
}

pub fn session_user(req: &HttpRequest) -> Option<SessionUser> {
    crate::sessions::TypedSession::of(req).user()
}

/// Where to go after signing in: the page itself for a GET; for a form sent without a session
/// (it ran out, or the tab was signed out elsewhere), the page the form was on, since the form's
/// own address answers only POST.
fn return_to(req: &HttpRequest) -> String {
    if matches!(
        req.method(),
        &actix_web::http::Method::GET | &actix_web::http::Method::HEAD
    ) {
        return match req.uri().path_and_query() {
            Some(pq) => pq.as_str().to_owned(),
            None => req.path().to_owned(),
        };
    }
    let Some(state) = req.app_data::<actix_web::web::Data<crate::state::AppState>>() else {
        return "/".to_owned();
    };
    let public = &state.config.public_url;
    let referer = req
        .headers()
        .get(actix_web::http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .filter(|r| r.origin() == public.origin());
    match referer {
        Some(r) => crate::routes::safe_next(Some(&r[url::Position::BeforePath..]), public),
        None => "/".to_owned(),
    }
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let result = match session_user(req) {
            Some(user) => Ok(CurrentUser(user)),
            None if wants_json(req) => Err(AppError::Unauthenticated),
            None => Err(AppError::SignInRequired {
                next: return_to(req),
            }),
        };
        Box::pin(async move { result })
    }
}

/// A signed-in admin; anyone else signed in gets 403. The role is the database's, read on each
/// admin request (admin pages are few): a demotion takes /admin away from every open session even
/// if ending that session failed, and a promotion gives it at once.
#[derive(Clone, Debug)]
pub struct AdminUser(pub CurrentUser);

impl std::ops::Deref for AdminUser {
    type Target = CurrentUser;
    fn deref(&self) -> &CurrentUser {
        &self.0
    }
}

impl FromRequest for AdminUser {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = CurrentUser::from_request(req, payload);
        let state = req
            .app_data::<actix_web::web::Data<crate::state::AppState>>()
            .cloned();
        Box::pin(async move {
            let user = user.await?;
            let Some(state) = state else {
                return Err(AppError::Internal(anyhow::anyhow!("no app state")));
            };
            let mut conn = state.db.conn().await?;
            let row = crate::store::users::by_id(&mut conn, user.uid.get()).await?;
            drop(conn);
            if row.is_some_and(|r| r.active && r.role == "admin") {
                Ok(AdminUser(user))
            } else {
                Err(AppError::Forbidden(
                    "This page is for administrators.".into(),
                ))
            }
        })
    }
}
