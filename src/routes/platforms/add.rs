//! POST /platforms: connect an account by pasting an access token.

use crate::sessions::TypedSession;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::list::{render, AddForm};
use crate::auth::CurrentUser;
use crate::config::Secret;
use crate::domain::platform::parse_connection_name;
use crate::domain::{InstanceUrl, PlatformType};
use crate::platforms::connect::ConnectError;
use crate::platforms::connect::{self, NewConnection};
use crate::platforms::PlatformError;
use crate::routes::error::AppError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    instance_url: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    platform_type: String,
}

type FieldErrors = Vec<(&'static str, String)>;

/// Every field's problem at once.
fn parse(state: &AppState, form: &TokenForm) -> Result<NewConnection, FieldErrors> {
    let mut errors = Vec::new();
    let instance = InstanceUrl::parse(&form.instance_url, |u| {
        state.instances.policy().allows_http(u)
    })
    .map_err(|m| errors.push(("instance_url", format!("Instance address {m}."))))
    .ok();
    let token = form.access_token.trim();
    if token.is_empty() {
        errors.push((
            "access_token",
            "Access token is required: paste the token from your instance's Development settings."
                .into(),
        ));
    } else if token.len() > 4096 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        errors.push((
            "access_token",
            "Access token must be one line of letters and digits, with no spaces.".into(),
        ));
    }
    let name = if form.name.trim().is_empty() {
        None
    } else {
        parse_connection_name(&form.name)
            .map_err(|m| errors.push(("name", format!("Name {m}."))))
            .ok()
    };
    let platform_type = PlatformType::parse(&form.platform_type)
        .map_err(|m| errors.push(("platform_type", format!("Platform type {m}."))))
        .ok()
        .flatten();
    match instance {
        Some(instance) if errors.is_empty() => Ok(NewConnection {
            instance,
            access_token: Secret::new(token.to_owned()),
            refresh_token: None,
            name,
            platform_type,
        }),
        _ => Err(errors),
    }
}

pub async fn submit(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let kept = AddForm {
        instance_url: form.instance_url.clone(),
        name: form.name.clone(),
        platform_type: form.platform_type.clone(),
        ..AddForm::default()
    };
    let refused = |errors: FieldErrors| {
        let state = state.clone();
        let user = user.clone();
        let session = session.clone();
        async move {
            render(
                &state,
                &user,
                &session,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                &kept,
                &errors,
            )
            .await
        }
    };
    let new = match parse(&state, &form) {
        Ok(new) => new,
        Err(errors) => return refused(errors).await,
    };
    match super::connect_and_use(&state, &session, &user, new).await {
        Ok(response) => Ok(response),
        Err(ConnectError::Platform(error)) => {
            let field = if matches!(error, PlatformError::InvalidToken) {
                "access_token"
            } else {
                "instance_url"
            };
            tracing::info!(error = %error, "connection refused");
            refused(vec![(field, connect::explain(&error))]).await
        }
        Err(other) => Err(other.into()),
    }
}
