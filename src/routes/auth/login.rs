//! GET and POST /login.

use crate::sessions::TypedSession;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_flash_messages::IncomingFlashMessages;
use serde::Deserialize;

use crate::auth::{csrf, user::session_user, SessionUser};
use crate::config::Secret;
use crate::routes::error::AppError;
use crate::routes::platforms::pick_current;
use crate::routes::{safe_next, see_other};
use crate::sessions::Client;
use crate::state::AppState;
use crate::store;
use crate::store::users::UserRow;
use crate::web::page::Page;

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    next: Option<String>,
}

const FAILED: &str =
    "That username and password do not match an active account. Check both and try again.";

async fn login_page(
    state: &AppState,
    req: &HttpRequest,
    flashes: Option<&IncomingFlashMessages>,
    status: StatusCode,
    username: &str,
    next: &str,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let secure = state.config.secure_cookies();
    // The token the visitor already has, while it has at least an hour left (so a form filled in
    // slowly still goes through); a fresh one otherwise.
    let existing = csrf::login_token_from(req, &state.keys.csrf, secure).filter(|t| {
        csrf::login_token_valid(
            &state.keys.csrf,
            t,
            store::now() + csrf::LOGIN_TOKEN_SECS / 2,
        )
    });
    let token = existing
        .clone()
        .unwrap_or_else(|| csrf::new_login_token(&state.keys.csrf, store::now()));
    // The first-admin hint, when the database can say; the form works without it.
    let no_users = match state.db.conn().await {
        Ok(mut conn) => store::users::count(&mut conn).await.ok() == Some(0),
        Err(_) => false,
    };
    let mut response = Page::new("Sign in", None, flashes)
        .with("csrf_token", &token)
        .with("username", &username)
        .with("next", &next)
        .with("error", &error)
        .with("no_users", &no_users)
        .render_status(&state.templates, status, "auth/login.html")?;
    if existing.is_none() {
        response.add_cookie(&csrf::login_cookie(&token, secure))?;
    }
    Ok(response)
}

pub async fn form(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<NextQuery>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(query.next.as_deref(), &state.config.public_url);
    if session_user(&req).is_some() {
        return Ok(see_other(&next));
    }
    login_page(
        &state,
        &req,
        Some(&flashes),
        StatusCode::OK,
        "",
        &next,
        None,
    )
    .await
}

/// The account these credentials sign in to, if any. The attempt is counted before the password is
/// checked, and refused with 429 while the username or the address is paused, even with the right
/// password; then with 503 at once when too many checks are already running.
async fn authenticate(
    state: &AppState,
    username: &str,
    password: String,
    ip: Option<std::net::IpAddr>,
) -> Result<Option<UserRow>, AppError> {
    if state.db.breaker().is_open() {
        // No answer is possible now: say so before counting anything.
        return Err(AppError::Unavailable(store::StoreError::Unavailable(
            "signing in".into(),
        )));
    }
    if let Some(wait) = state.throttle.attempt(username, ip).await? {
        let minutes = wait.div_ceil(60);
        return Err(AppError::TooManyRequests {
            retry_after: wait,
            message: format!(
                "Too many failed sign-in attempts. Sign-in is paused for this account or address; \
                 try again in {minutes} minute{}.",
                if minutes == 1 { "" } else { "s" }
            ),
        });
    }
    // Answered 503 after counting (every check busy, the database away): the attempt is taken
    // back, so an outage or a burst locks nobody out. Only attempts that get an answer count.
    let permit = match state.passwords.try_permit() {
        Ok(permit) => permit,
        Err(busy) => {
            state.throttle.forget(username, ip).await;
            return Err(busy.into());
        }
    };
    let user = match find_user(state, username).await {
        Ok(user) => user,
        Err(error) => {
            state.throttle.forget(username, ip).await;
            return Err(error.into());
        }
    };
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verified = state
        .passwords
        .verify(permit, Secret::new(password), stored)
        .await?;
    match user {
        Some(user) if verified && user.active => {
            state.throttle.succeeded(username, ip).await?;
            Ok(Some(user))
        }
        _ => Ok(None),
    }
}

async fn find_user(state: &AppState, username: &str) -> Result<Option<UserRow>, store::StoreError> {
    let mut conn = state.db.conn().await?;
    store::users::by_username(&mut conn, username).await
}

/// A new session id for the signed-in person, starting on their default connection.
async fn start_session(
    state: &AppState,
    req: &HttpRequest,
    session: &TypedSession,
    user: UserRow,
) -> Result<(), AppError> {
    let mut conn = state.db.conn().await?;
    store::users::record_login(&mut conn, user.id).await?;
    drop(conn);
    let uid = crate::domain::UserId(user.id);
    let user_agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(300).collect::<String>());
    session.start(
        &SessionUser {
            uid,
            username: user.username,
            role: user.role,
            csrf: csrf::random_token(),
            cv: user.credentials_version,
        },
        &Client {
            user_agent,
            address: state.client_ip(req).map(|ip| ip.to_string()),
        },
    )?;
    if let Some(default) = pick_current(&state.platforms.list(uid).await?, session) {
        session.set_current_platform(default.id)?;
    }
    tracing::info!(user.id = uid.get(), "signed in");
    Ok(())
}

pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let secure = state.config.secure_cookies();
    if !csrf::login_form_ok(&req, &state.keys.csrf, secure, &form.csrf_token) {
        return Err(AppError::Csrf);
    }
    let next = safe_next(form.next.as_deref(), &state.config.public_url);
    let username = form.username.trim().to_lowercase();
    // A name no account can have (control characters, far too long) is refused here, before it
    // reaches the throttle's keys or the database (PostgreSQL refuses text with a NUL in it).
    if crate::domain::Username::parse(&username).is_err() {
        tracing::info!("sign-in failed");
        let status = StatusCode::UNAUTHORIZED;
        return login_page(&state, &req, None, status, "", &next, Some(FAILED)).await;
    }
    let ip = state.client_ip(&req);
    match authenticate(&state, &username, form.password, ip).await? {
        Some(user) => {
            start_session(&state, &req, &session, user).await?;
            Ok(see_other(&next))
        }
        None => {
            tracing::info!("sign-in failed");
            let status = StatusCode::UNAUTHORIZED;
            login_page(&state, &req, None, status, &username, &next, Some(FAILED)).await
        }
    }
}
