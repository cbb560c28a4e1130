//! POST /api/update_user_settings: the settings form's rules, in JSON. Fields left out keep their
//! current value; platform_id defaults to the session's connection.

use actix_session::Session;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use crate::auth::CurrentUser;
use crate::cache::settings::SettingsError;
use crate::domain::RawSettings;
use crate::routes::error::AppError;
use crate::sessions::CURRENT_PLATFORM_KEY;
use crate::state::AppState;

fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": message}))
}

fn text(value: Option<&Value>) -> Result<Option<String>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(_) => Err(()),
    }
}

fn raw_from(body: &Map<String, Value>) -> Result<RawSettings, &'static str> {
    let field = |name: &'static str| text(body.get(name)).map_err(|_| name);
    Ok(RawSettings {
        max_posts_per_run: field("max_posts_per_run")?,
        max_caption_length: field("max_caption_length")?,
        optimal_min_length: field("optimal_min_length")?,
        optimal_max_length: field("optimal_max_length")?,
        reprocess_existing: field("reprocess_existing")?,
        processing_delay: field("processing_delay")?,
    })
}

pub async fn update(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    session: Session,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    use actix_web::http::StatusCode;
    if user.check_csrf_header(&req).is_err() {
        return Ok(error(
            StatusCode::FORBIDDEN,
            "Send the page's CSRF token in the X-CSRF-Token header.",
        ));
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&body) else {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "The body must be a JSON object.",
        ));
    };
    let platform_id = match body.get("platform_id") {
        None | Some(Value::Null) => session.get::<i64>(CURRENT_PLATFORM_KEY).ok().flatten(),
        Some(v) => match v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())) {
            Some(id) => Some(id),
            None => {
                return Ok(HttpResponse::UnprocessableEntity()
                    .json(json!({"errors": {"platform_id": "platform_id must be the id of one of your connections."}})))
            }
        },
    };
    let platform_id = match platform_id {
        Some(id) => id,
        None => match state
            .platforms
            .list(user.uid)
            .await?
            .iter()
            .find(|p| p.is_default)
        {
            Some(p) => p.id,
            None => return Ok(error(StatusCode::NOT_FOUND, "Connect an account first.")),
        },
    };
    let (platform, current) = match state
        .settings
        .get_user_settings(user.uid, platform_id)
        .await
    {
        Ok(found) => found,
        Err(SettingsError::NotFound) => {
            return Ok(error(StatusCode::NOT_FOUND, "No such connection."))
        }
        Err(SettingsError::Store(e)) => return Err(e.into()),
    };
    let raw = match raw_from(&body) {
        Ok(raw) => raw.or_current(&current.settings),
        Err(field) => return Ok(HttpResponse::UnprocessableEntity().json(
            json!({"errors": {field: format!("{field} must be a number, a string or a boolean.")}}),
        )),
    };
    let settings = match raw.parse(platform.description_limit.max(0) as u32) {
        Ok(s) => s,
        Err(errors) => {
            let map: Map<String, Value> = errors
                .into_iter()
                .map(|(f, m)| (f.to_owned(), Value::String(m)))
                .collect();
            return Ok(HttpResponse::UnprocessableEntity().json(json!({"errors": map})));
        }
    };
    match state
        .settings
        .update_user_settings(user.uid, platform_id, &settings)
        .await
    {
        Ok(saved) => {
            // The saved settings themselves, with the connection they belong to.
            let mut body = serde_json::to_value(&saved.settings)
                .map_err(|e| AppError::Internal(anyhow::Error::new(e)))?;
            body["platform_id"] = json!(platform_id);
            body["saved"] = json!(saved.saved);
            Ok(HttpResponse::Ok().json(body))
        }
        Err(SettingsError::NotFound) => Ok(error(StatusCode::NOT_FOUND, "No such connection.")),
        Err(SettingsError::Store(e)) => Err(e.into()),
    }
}
