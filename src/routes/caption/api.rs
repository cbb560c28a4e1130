//! POST /api/update_user_settings: the settings form's rules, in JSON. Fields left out keep their
//! current value; platform_id defaults to the session's connection.

use crate::sessions::TypedSession;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::auth::CurrentUser;
use crate::domain::PlatformId;
use crate::domain::RawSettings;
use crate::routes::error::AppError;
use crate::services::settings::SettingsError;
use crate::state::AppState;

/// Every field the call takes.
const FIELDS: [&str; 7] = [
    "max_posts_per_run",
    "max_caption_length",
    "optimal_min_length",
    "optimal_max_length",
    "reprocess_existing",
    "processing_delay",
    "platform_id",
];

fn error(status: StatusCode, message: &str) -> AppError {
    AppError::Json {
        status,
        body: json!({"error": message}),
    }
}

fn field_errors(errors: impl IntoIterator<Item = (String, String)>) -> AppError {
    let map: Map<String, Value> = errors
        .into_iter()
        .map(|(f, m)| (f, Value::String(m)))
        .collect();
    AppError::Json {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: json!({"errors": map}),
    }
}

/// The connection the call is about: platform_id, else the session's, else the default.
async fn platform_id(
    state: &AppState,
    session: &TypedSession,
    user: &CurrentUser,
    body: &Map<String, Value>,
) -> Result<PlatformId, AppError> {
    match body.get("platform_id") {
        None | Some(Value::Null) => {}
        Some(v) => {
            return v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .map(PlatformId)
                .ok_or_else(|| {
                    field_errors([(
                        "platform_id".to_owned(),
                        "platform_id must be the id of one of your connections.".to_owned(),
                    )])
                })
        }
    }
    if let Some(id) = session.current_platform() {
        return Ok(id);
    }
    state
        .platforms
        .list(user.uid)
        .await?
        .iter()
        .find(|p| p.is_default)
        .map(|p| p.id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, "Connect an account first."))
}

/// The settings service's answers, in this route's JSON.
fn settings_error(e: SettingsError) -> AppError {
    match e {
        SettingsError::NotFound => error(StatusCode::NOT_FOUND, "No such connection."),
        SettingsError::Store(e) => e.into(),
    }
}

pub async fn update(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    if user.check_csrf_header(&req).is_err() {
        return Err(error(
            StatusCode::FORBIDDEN,
            "Send the page's CSRF token in the X-CSRF-Token header.",
        ));
    }
    let is_json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the body as JSON, with Content-Type: application/json.",
        ));
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "The body must be a JSON object.",
        ));
    };
    // A misspelt field would otherwise be left out silently and the answer say "saved".
    let unknown: Vec<(String, String)> = body
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| {
            (
                k.clone(),
                format!(
                    "{k} is not a setting; the fields are {}.",
                    FIELDS.join(", ")
                ),
            )
        })
        .collect();
    if !unknown.is_empty() {
        return Err(field_errors(unknown));
    }
    let platform_id = platform_id(&state, &session, &user, &body).await?;
    let (platform, current) = state
        .settings
        .get_user_settings(user.uid, platform_id)
        .await
        .map_err(settings_error)?;
    let raw = match RawSettings::from_json(&body) {
        Ok(raw) => raw.or_current(&current.settings),
        Err(f) => {
            return Err(field_errors([(
                f.to_owned(),
                format!("{f} must be a number, a string or a boolean."),
            )]))
        }
    };
    let settings = match raw.parse(platform.description_limit.max(0) as u32) {
        Ok(s) => s,
        Err(errors) => {
            return Err(field_errors(
                errors.into_iter().map(|(f, m)| (f.to_owned(), m)),
            ))
        }
    };
    let saved = state
        .settings
        .update_user_settings(user.uid, platform_id, &settings)
        .await
        .map_err(settings_error)?;
    // The saved settings themselves, with the connection they belong to.
    let mut answer = serde_json::to_value(&saved.settings)
        .map_err(|e| AppError::Internal(anyhow::Error::new(e)))?;
    answer["platform_id"] = json!(platform_id);
    answer["saved"] = json!(saved.saved);
    Ok(HttpResponse::Ok().json(answer))
}
