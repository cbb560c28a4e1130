//! /admin/settings: the system-wide caption defaults (the six fields, with the person's form's
//! rules and max_caption_length up to 1500), which every connection without settings of its own
//! gets, clamped to its instance's limit. Saved like any cached value (the database with an
//! outbox row, then Redis), so every app instance and worker sees them at once; in the audit log.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::{FlashMessage, IncomingFlashMessages};
use serde::Deserialize;

use crate::auth::AdminUser;
use crate::domain::caption_settings::{label, FieldError, RawSettings};
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::state::AppState;
use crate::web::page::Page;

/// The longest description any instance fedialt knows allows (Mastodon's default).
const MAX_DEFAULT_LENGTH: u32 = 1500;

fn render(
    state: &AppState,
    admin: &AdminUser,
    flashes: Option<&IncomingFlashMessages>,
    status: StatusCode,
    values: &RawSettings,
    errors: &[FieldError],
) -> Result<HttpResponse, AppError> {
    let error_of = |name: &str| {
        errors
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, m)| m.clone())
    };
    let specs = [
        ("max_posts_per_run", "Posts with images one run handles: 1 to 500.", &values.max_posts_per_run, "numeric"),
        ("max_caption_length", "A description is never longer than this: 50 to 1500 characters (and never over an instance's own limit).", &values.max_caption_length, "numeric"),
        ("optimal_min_length", "The model aims for at least this many characters: 10 up to the longest preferred length.", &values.optimal_min_length, "numeric"),
        ("optimal_max_length", "The model aims for at most this many characters: up to the maximum description length.", &values.optimal_max_length, "numeric"),
        ("processing_delay", "Seconds between posts, kind to instances: 0 to 60, decimals allowed.", &values.processing_delay, "decimal"),
    ];
    let fields: Vec<serde_json::Value> = specs
        .iter()
        .map(|(name, hint, value, inputmode)| {
            serde_json::json!({
                "name": name, "label": label(name), "hint": hint,
                "value": value.as_deref().unwrap_or_default(), "inputmode": inputmode,
                "error": error_of(name),
            })
        })
        .collect();
    Page::new("Settings · Administration", Some(admin), flashes)
        .with("fields", &fields)
        .with(
            "reprocess",
            &values
                .reprocess_existing
                .as_deref()
                .is_some_and(|v| matches!(v, "on" | "true" | "1" | "yes")),
        )
        .with("reprocess_error", &error_of("reprocess_existing"))
        .with_errors(errors)
        .render_status(&state.templates, status, "admin/settings.html")
}

pub async fn show(
    admin: AdminUser,
    state: web::Data<AppState>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let defaults = state.settings.defaults().await?;
    let values = RawSettings::from_settings(&defaults);
    render(&state, &admin, Some(&flashes), StatusCode::OK, &values, &[])
}

#[derive(Deserialize)]
pub struct DefaultsForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(flatten)]
    raw: RawSettings,
}

pub async fn save_defaults(
    admin: AdminUser,
    state: web::Data<AppState>,
    form: web::Form<DefaultsForm>,
) -> Result<HttpResponse, AppError> {
    admin.check_csrf(&form.csrf_token)?;
    let form = form.into_inner();
    let settings = match form.raw.parse(MAX_DEFAULT_LENGTH) {
        Ok(settings) => settings,
        Err(errors) => {
            return render(
                &state,
                &admin,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form.raw,
                &errors,
            )
        }
    };
    state
        .settings
        .save_defaults(&settings, (admin.uid.get(), admin.username.clone()))
        .await?;
    FlashMessage::success(
        "The defaults are saved: every account without settings of its own uses them from now on.",
    )
    .send();
    Ok(see_other("/admin/settings"))
}
