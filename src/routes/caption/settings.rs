//! GET /caption_settings, and POST /caption_settings (also at /save_caption_settings).

use crate::sessions::TypedSession;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::{FlashMessage, IncomingFlashMessages};
use serde::Deserialize;

use super::view_or_redirect;
use crate::auth::CurrentUser;
use crate::domain::caption_settings::{label, FieldError, RawSettings};
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::services::settings::{CaptionView, SettingsError};
use crate::state::AppState;
use crate::web::page::Page;

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(flatten)]
    raw: RawSettings,
}

fn render(
    tera: &tera::Tera,
    user: &CurrentUser,
    view: &CaptionView,
    flashes: Option<&IncomingFlashMessages>,
    status: StatusCode,
    values: &RawSettings,
    errors: &[FieldError],
) -> Result<HttpResponse, AppError> {
    let unavailable = status == StatusCode::SERVICE_UNAVAILABLE;
    let error_of = |name: &str| {
        errors
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, m)| m.clone())
    };
    let limit = view.current.description_limit.to_string();
    // (name, hint, value, inputmode); the rules themselves live in the domain type.
    let specs = [
        ("max_posts_per_run", "How many posts with images that need a description one run handles: 1 to 500.".to_owned(), &values.max_posts_per_run, "numeric"),
        ("max_caption_length", format!("A description is never longer than this: 50 to {limit} characters."), &values.max_caption_length, "numeric"),
        ("optimal_min_length", "The model aims for at least this many characters: 10 up to the longest preferred length.".to_owned(), &values.optimal_min_length, "numeric"),
        ("optimal_max_length", "The model aims for at most this many characters: up to the maximum description length.".to_owned(), &values.optimal_max_length, "numeric"),
        ("processing_delay", "Waiting between posts is kind to your instance: 0 to 60 seconds, decimals allowed.".to_owned(), &values.processing_delay, "decimal"),
    ];
    let fields: Vec<serde_json::Value> = specs
        .iter()
        .map(|(name, hint, value, inputmode)| {
            serde_json::json!({
                "name": name, "label": label(name), "hint": hint, "value": value.as_deref().unwrap_or_default(),
                "inputmode": inputmode, "error": error_of(name),
            })
        })
        .collect();
    Page::new("Caption settings", Some(user), flashes)
        .with("waiting", &view.waiting)
        .with("platform", &view.current)
        .with("handle", &view.current.handle())
        .with("fields", &fields)
        .with(
            "reprocess",
            &values
                .reprocess_existing
                .as_deref()
                .is_some_and(|v| matches!(v, "on" | "true" | "1" | "yes")),
        )
        .with("reprocess_error", &error_of("reprocess_existing"))
        .with("saved", &view.settings.saved)
        .with("unavailable", &unavailable)
        .with_errors(errors)
        .render_status(tera, status, "caption/settings.html")
        .map(|mut response| {
            if unavailable {
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from_static(
                        crate::routes::error::RETRY_AFTER_SECS,
                    ),
                );
            }
            response
        })
}

pub async fn form(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let view = view_or_redirect(&state, &session, user.uid, false).await?;
    let values = RawSettings::from_settings(&view.settings.settings);
    render(
        &state.templates,
        &user,
        &view,
        Some(&flashes),
        StatusCode::OK,
        &values,
        &[],
    )
}

pub async fn save(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    form: web::Form<SettingsForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let view = view_or_redirect(&state, &session, user.uid, false).await?;
    let limit = view.current.description_limit.max(0) as u32;
    let settings = match form.raw.parse(limit) {
        Ok(settings) => settings,
        Err(errors) => {
            return render(
                &state.templates,
                &user,
                &view,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form.raw,
                &errors,
            )
        }
    };
    match state
        .settings
        .update_user_settings(user.uid, view.current.id, &settings)
        .await
    {
        Ok(_) => {
            FlashMessage::success(format!(
                "Caption settings saved for {}.",
                view.current.handle()
            ))
            .send();
            Ok(see_other("/caption_generation"))
        }
        // The database is away: the form again, with what was typed and a plain word that
        // nothing was saved.
        Err(SettingsError::Store(e)) if e.is_unavailable() => {
            tracing::warn!(error = %e, "settings not saved: the database is away");
            render(
                &state.templates,
                &user,
                &view,
                None,
                StatusCode::SERVICE_UNAVAILABLE,
                &form.raw,
                &[],
            )
        }
        Err(other) => Err(other.into()),
    }
}
