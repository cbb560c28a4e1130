//! Connecting by OAuth: register fedialt on the instance (once per instance), send the person to
//! the instance to authorize, take the code back, exchange it, verify and save.

use crate::sessions::TypedSession;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::FlashMessage;
use serde::{Deserialize, Serialize};

use crate::auth::{csrf, CurrentUser};
use crate::crypto;
use crate::domain::{InstanceUrl, PlatformType};
use crate::platforms::client::RegisteredApp;
use crate::platforms::connect::{self, ConnectError, NewConnection};
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::state::AppState;
use crate::store;

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    instance_url: String,
    #[serde(default)]
    platform_type: String,
    #[serde(default)]
    csrf_token: String,
}

const EXPIRED: &str =
    "That sign-in link has expired or was already used. Start connecting the account again.";

/// How long a started connection waits for the instance's answer.
const PENDING_FOR_SECS: i64 = 10 * 60;

/// What the session remembers between the redirect to the instance and the way back. It lives in
/// the session that started it, is taken out by the first answer, and expires after ten minutes.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    instance_url: String,
    platform_type: PlatformType,
    #[serde(default)]
    started_at: i64,
}

impl Pending {
    fn expired(&self, now: i64) -> bool {
        !(self.started_at..self.started_at + PENDING_FOR_SECS).contains(&now)
    }
}

fn redirect_uri(state: &AppState) -> String {
    format!(
        "{}/platforms/oauth/callback",
        state.config.public_url.as_str().trim_end_matches('/')
    )
}

/// The app registered on this instance for our redirect URI and scopes, registering it if needed.
/// The instance's refusal is ConnectError::Platform, for the caller to explain.
async fn app_for(
    state: &AppState,
    instance: &InstanceUrl,
    scopes: &str,
) -> Result<RegisteredApp, ConnectError> {
    let redirect = redirect_uri(state);
    let mut conn = state.db.conn().await?;
    if let Some((client_id, secret_enc)) =
        store::oauth_apps::find(&mut conn, instance.as_str(), &redirect, scopes).await?
    {
        let client_secret = state.secrets.open(crypto::CLIENT_SECRET, &secret_enc)?;
        return Ok(RegisteredApp {
            client_id,
            client_secret: client_secret.expose().clone(),
        });
    }
    drop(conn);
    let app = state
        .instances
        .register_app(
            instance,
            &redirect,
            scopes,
            state.config.public_url.as_str(),
        )
        .await?;
    let sealed = state
        .secrets
        .seal(crypto::CLIENT_SECRET, &app.client_secret)?;
    let mut conn = state.db.conn().await?;
    store::oauth_apps::save(
        &mut conn,
        instance.as_str(),
        &redirect,
        scopes,
        &app.client_id,
        &sealed,
    )
    .await?;
    Ok(app)
}

pub async fn start_by_get() -> HttpResponse {
    let mut response = crate::routes::error::error_page_with_link(
        StatusCode::METHOD_NOT_ALLOWED,
        "Start from Connected accounts",
        "Connecting an account starts from the form on the Connected accounts page, so that a \
         link from elsewhere cannot connect an account you did not choose.",
        Some(("/platforms", "Go to Connected accounts")),
    );
    response.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static("POST"),
    );
    response
}

/// The /platforms page again, with the typed address kept and what to fix.
async fn refused(
    state: &AppState,
    user: &CurrentUser,
    session: &TypedSession,
    typed: &str,
    message: String,
) -> Result<HttpResponse, AppError> {
    let form = super::list::AddForm {
        oauth_instance_url: typed.to_owned(),
        ..Default::default()
    };
    super::list::render(
        state,
        user,
        session,
        None,
        StatusCode::UNPROCESSABLE_ENTITY,
        &form,
        &[("oauth_instance_url", message)],
    )
    .await
}

pub async fn start(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<StartForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let typed = form.instance_url.trim();
    let instance = match InstanceUrl::parse(typed, |u| state.instances.policy().allows_http(u)) {
        Ok(i) => i,
        Err(m) => {
            return refused(
                &state,
                &user,
                &session,
                typed,
                format!("Instance address {m}."),
            )
            .await
        }
    };
    let chosen = match PlatformType::parse(&form.platform_type) {
        Ok(t) => t,
        Err(m) => {
            return refused(
                &state,
                &user,
                &session,
                typed,
                format!("Platform type {m}."),
            )
            .await
        }
    };
    let platform_type = match chosen {
        Some(t) => t,
        None => match state.instances.instance_info(&instance).await {
            Ok(info) => info.platform_type,
            Err(e) => return refused(&state, &user, &session, typed, connect::explain(&e)).await,
        },
    };
    let scopes = platform_type.oauth_scopes();
    let app = match app_for(&state, &instance, scopes).await {
        Ok(app) => app,
        Err(ConnectError::Platform(e)) => {
            return refused(&state, &user, &session, typed, connect::explain(&e)).await
        }
        Err(other) => return Err(other.into()),
    };
    let pending = Pending {
        state: csrf::random_token(),
        instance_url: instance.as_str().to_owned(),
        platform_type,
        started_at: store::now(),
    };
    let mut authorize = url::Url::parse(&instance.join("/oauth/authorize"))
        .map_err(|e| AppError::Internal(anyhow::Error::new(e)))?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &app.client_id)
        .append_pair("redirect_uri", &redirect_uri(&state))
        .append_pair("response_type", "code")
        .append_pair("scope", scopes)
        .append_pair("state", &pending.state);
    let mut conn = state.db.conn().await?;
    store::oauth_pending::insert(
        &mut conn,
        &crate::sessions::session_id(&pending.state),
        user.uid.get(),
        pending.started_at,
    )
    .await?;
    drop(conn);
    session.set_pending_oauth(&pending)?;
    Ok(see_other(authorize.as_str()))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// The pending request this answer belongs to, and its code; or why it cannot be used. The pending
/// state is taken out of the session either way: each one is good for one answer.
/// Why an answer cannot be used, and the address the person typed when it is known (kept for
/// the form).
type Refusal = (&'static str, Option<String>);

fn accept_answer(
    session: &TypedSession,
    query: &CallbackQuery,
) -> Result<(Pending, String), Refusal> {
    let pending: Option<Pending> = session.take_pending_oauth();
    let Some(pending) = pending.filter(|p| !p.expired(store::now())) else {
        return Err((EXPIRED, None));
    };
    let typed = Some(pending.instance_url.clone());
    if !query
        .state
        .as_deref()
        .is_some_and(|s| csrf::tokens_match(&pending.state, s))
    {
        return Err(("The answer from the instance could not be matched to your request (the state did not match), \
             so nothing was saved. Start connecting the account again.", typed));
    }
    if query.error.is_some() {
        return Err((
            "The instance says the authorization was denied, so no account was connected.",
            typed,
        ));
    }
    match query.code.as_deref().filter(|c| !c.is_empty()) {
        Some(code) => Ok((pending, code.to_owned())),
        None => Err((
            "The instance sent no authorization code; nothing was saved.",
            typed,
        )),
    }
}

/// Back to /platforms with the message, and the instance's address in the Connect field again.
fn back_to(message: impl Into<String>, instance_url: Option<&str>) -> HttpResponse {
    FlashMessage::error(message.into()).send();
    match instance_url {
        Some(url) => {
            let url: String = url::form_urlencoded::byte_serialize(url.as_bytes()).collect();
            see_other(&format!("/platforms?instance_url={url}"))
        }
        None => see_other("/platforms"),
    }
}

pub async fn callback(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    query: web::Query<CallbackQuery>,
) -> Result<HttpResponse, AppError> {
    let (pending, code) = match accept_answer(&session, &query) {
        Ok(accepted) => accepted,
        Err((message, typed)) => return Ok(back_to(message, typed.as_deref())),
    };
    let typed = pending.instance_url.clone();
    let back_with = |message: String| back_to(message, Some(&typed));
    // The session's copy says it is this session's; the table makes it good once, whatever
    // other requests on the same session write back.
    let mut conn = state.db.conn().await?;
    let first = store::oauth_pending::take(
        &mut conn,
        &crate::sessions::session_id(&pending.state),
        user.uid.get(),
        store::now() - PENDING_FOR_SECS,
    )
    .await?;
    drop(conn);
    if !first {
        return Ok(back_with(EXPIRED.to_owned()));
    }
    let code = code.as_str();
    let instance = match InstanceUrl::parse(&pending.instance_url, |_| true) {
        Ok(i) => i,
        Err(m) => return Ok(back_with(format!("Instance address {m}."))),
    };
    let scopes = pending.platform_type.oauth_scopes();
    let app = match app_for(&state, &instance, scopes).await {
        Ok(app) => app,
        Err(ConnectError::Platform(e)) => return Ok(back_with(connect::explain(&e))),
        Err(other) => return Err(other.into()),
    };
    let tokens = match state
        .instances
        .exchange_code(&instance, &app, code, &redirect_uri(&state), scopes)
        .await
    {
        Ok(t) => t,
        Err(e) => return Ok(back_with(connect::explain(&e))),
    };
    let new = NewConnection {
        instance,
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        name: None,
        platform_type: Some(pending.platform_type),
    };
    match super::connect_and_use(&state, &session, &user, new).await {
        Ok(response) => Ok(response),
        Err(ConnectError::Platform(e)) => Ok(back_with(connect::explain(&e))),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_connection_lasts_ten_minutes() {
        let pending = Pending {
            state: "s".into(),
            instance_url: "https://social.example".into(),
            platform_type: PlatformType::Mastodon,
            started_at: 1_000,
        };
        assert!(!pending.expired(1_000));
        assert!(!pending.expired(1_000 + 599));
        assert!(pending.expired(1_000 + 600));
        assert!(
            pending.expired(999),
            "a clock that went back does not extend it"
        );
    }
}
