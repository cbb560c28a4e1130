//! /admin/settings: the system-wide caption defaults (the six fields, with the person's form's
//! rules and max_caption_length up to 1500), which every connection without settings of its own
//! gets, clamped to its instance's limit. Saved like any cached value (the database with an
//! outbox row, then Redis), so every app instance and worker sees them at once; in the audit log.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::{FlashMessage, IncomingFlashMessages};
use serde::Deserialize;

use crate::auth::AdminUser;
use crate::config::CaptionBackend;
use crate::domain::caption_settings::{label, FieldError, RawSettings};
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::services::model::NewModel;
use crate::state::AppState;
use crate::web::page::Page;

/// The longest description any instance fedialt knows allows (Mastodon's default).
const MAX_DEFAULT_LENGTH: u32 = 1500;

/// What the model form shows: the values that apply (or were just typed), never a key.
#[derive(serde::Serialize)]
struct ModelValues {
    caption_backend: String,
    caption_base_url: String,
    caption_model: String,
    caption_timeout_secs: String,
    caption_concurrency: String,
    has_key: bool,
    from_environment: bool,
}

async fn model_values(state: &AppState) -> Result<ModelValues, AppError> {
    let effective = state.model.effective().await?;
    Ok(ModelValues {
        caption_backend: effective.backend_name().to_owned(),
        caption_base_url: effective.config.base_url.to_string(),
        caption_model: effective.config.model.clone(),
        caption_timeout_secs: effective.config.timeout.as_secs().to_string(),
        caption_concurrency: effective.config.concurrency.to_string(),
        has_key: effective.has_key(),
        from_environment: effective.saved.is_none(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn render(
    state: &AppState,
    admin: &AdminUser,
    flashes: Option<&IncomingFlashMessages>,
    status: StatusCode,
    values: &RawSettings,
    errors: &[FieldError],
    model: Option<ModelValues>,
    model_errors: &[FieldError],
) -> Result<HttpResponse, AppError> {
    let model = match model {
        Some(model) => model,
        None => model_values(state).await?,
    };
    render_inner(
        state,
        admin,
        flashes,
        status,
        values,
        errors,
        model,
        model_errors,
        None,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn render_inner(
    state: &AppState,
    admin: &AdminUser,
    flashes: Option<&IncomingFlashMessages>,
    status: StatusCode,
    values: &RawSettings,
    errors: &[FieldError],
    model: ModelValues,
    model_errors: &[FieldError],
    test: Option<serde_json::Value>,
) -> Result<HttpResponse, AppError> {
    let model_error_map: serde_json::Map<String, serde_json::Value> = model_errors
        .iter()
        .map(|(f, m)| ((*f).to_owned(), m.clone().into()))
        .collect();
    let mut all_errors: Vec<FieldError> = errors.to_vec();
    all_errors.extend(model_errors.iter().cloned());
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
        .with("model", &model)
        .with("test", &test)
        .with("model_errors", &model_error_map)
        .with_errors(&all_errors)
        .render_status(&state.templates, status, "admin/settings.html")
}

pub async fn show(
    admin: AdminUser,
    state: web::Data<AppState>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let defaults = state.settings.defaults().await?;
    let values = RawSettings::from_settings(&defaults);
    render(
        &state,
        &admin,
        Some(&flashes),
        StatusCode::OK,
        &values,
        &[],
        None,
        &[],
    )
    .await
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
                None,
                &[],
            )
            .await
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

#[derive(Deserialize)]
pub struct ModelForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    caption_backend: String,
    #[serde(default)]
    caption_base_url: String,
    #[serde(default)]
    caption_model: String,
    #[serde(default)]
    caption_timeout_secs: String,
    #[serde(default)]
    caption_concurrency: String,
    #[serde(default)]
    caption_api_key: String,
    clear_api_key: Option<String>,
}

/// The model form checked field by field.
fn check_model(form: &ModelForm) -> Result<NewModel, Vec<FieldError>> {
    let mut errors: Vec<FieldError> = Vec::new();
    let backend = match form.caption_backend.trim() {
        "ollama" => Some(CaptionBackend::Ollama),
        "openai" => Some(CaptionBackend::OpenAi),
        _ => {
            errors.push((
                "caption_backend",
                "Backend: must be ollama or openai.".into(),
            ));
            None
        }
    };
    let base_url = url::Url::parse(form.caption_base_url.trim())
        .ok()
        .filter(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.as_str().len() <= 500
        });
    match &base_url {
        None => errors.push((
            "caption_base_url",
            "Address: must be an http:// or https:// address of at most 500 characters, such as \
             http://127.0.0.1:11434 (Ollama) or https://api.example.com/v1 (OpenAI-compatible)."
                .into(),
        )),
        // Credentials belong in the API key field (sealed), not in an address that is shown.
        Some(u)
            if !u.username().is_empty()
                || u.password().is_some()
                || u.query().is_some()
                || u.fragment().is_some() =>
        {
            errors.push((
                "caption_base_url",
                "Address: must not hold a user, password, query or fragment; put a key in the API \
                 key field."
                    .into(),
            ))
        }
        Some(_) => {}
    }
    let model = form.caption_model.trim();
    if model.is_empty()
        || model.chars().count() > 200
        || model.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        errors.push((
            "caption_model",
            "Model: must be a model name of 1 to 200 characters without spaces, such as llava:7b."
                .into(),
        ));
    }
    let number =
        |errors: &mut Vec<FieldError>, field: &'static str, name: &str, text: &str, max: u64| {
            match text.trim().parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Some(n),
                _ => {
                    errors.push((
                        field,
                        format!("{name}: must be a whole number from 1 to {max}."),
                    ));
                    None
                }
            }
        };
    let timeout = number(
        &mut errors,
        "caption_timeout_secs",
        "Timeout",
        &form.caption_timeout_secs,
        3600,
    );
    let concurrency = number(
        &mut errors,
        "caption_concurrency",
        "Calls at once",
        &form.caption_concurrency,
        64,
    );
    let key = form.caption_api_key.trim();
    if key.chars().count() > 500 || key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        errors.push((
            "caption_api_key",
            "API key: must be at most 500 characters, without spaces.".into(),
        ));
    }
    match (backend, base_url, timeout, concurrency) {
        (Some(backend), Some(base_url), Some(timeout_secs), Some(concurrency))
            if errors.is_empty() =>
        {
            Ok(NewModel {
                backend,
                base_url,
                model: model.to_owned(),
                timeout_secs,
                concurrency: concurrency as u32,
                api_key: (!key.is_empty()).then(|| key.to_owned()),
                clear_api_key: form.clear_api_key.is_some(),
            })
        }
        _ => Err(errors),
    }
}

pub async fn save_model(
    admin: AdminUser,
    state: web::Data<AppState>,
    form: web::Form<ModelForm>,
) -> Result<HttpResponse, AppError> {
    admin.check_csrf(&form.csrf_token)?;
    match check_model(&form) {
        Ok(new) => {
            state
                .model
                .save(new, (admin.uid.get(), admin.username.clone()))
                .await?;
            FlashMessage::success(
                "The vision model is saved: every worker uses it for its next image.",
            )
            .send();
            Ok(see_other("/admin/settings"))
        }
        Err(errors) => {
            let defaults = state.settings.defaults().await?;
            let current = model_values(&state).await?;
            let typed = ModelValues {
                caption_backend: form.caption_backend.trim().to_owned(),
                caption_base_url: form.caption_base_url.trim().to_owned(),
                caption_model: form.caption_model.trim().to_owned(),
                caption_timeout_secs: form.caption_timeout_secs.trim().to_owned(),
                caption_concurrency: form.caption_concurrency.trim().to_owned(),
                ..current
            };
            render(
                &state,
                &admin,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
                &RawSettings::from_settings(&defaults),
                &[],
                Some(typed),
                &errors,
            )
            .await
        }
    }
}

/// A small picture for the model test: a red square on white.
fn test_image() -> Option<Vec<u8>> {
    let image = image::RgbImage::from_fn(96, 96, |x, y| {
        if (24..72).contains(&x) && (24..72).contains(&y) {
            image::Rgb([200, 30, 30])
        } else {
            image::Rgb([255, 255, 255])
        }
    });
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut png, image::ImageFormat::Png)
        .ok()?;
    crate::captioning::images::prepare(png.get_ref(), 1_000_000)
        .ok()
        .map(|p| p.jpeg)
}

/// POST /admin/settings/model/test: the saved model describes a small built-in image; the page
/// shows the answer and the time, or the exact error (never a 500). Rendered in the answer, not
/// kept in a flash cookie: a long answer in any script fits.
pub async fn test_model(
    admin: AdminUser,
    state: web::Data<AppState>,
    form: web::Form<crate::routes::platforms::actions::CsrfForm>,
) -> Result<HttpResponse, AppError> {
    admin.check_csrf(&form.csrf_token)?;
    let effective = state.model.effective().await?;
    let where_ = format!(
        "{} at {} (model {})",
        effective.backend_name(),
        effective.config.base_url,
        effective.config.model
    );
    // The model's own timeout and tries, but never more than two minutes for a test.
    let limit = (effective.config.timeout * 3 + std::time::Duration::from_secs(5))
        .min(std::time::Duration::from_secs(120));
    let started = std::time::Instant::now();
    let outcome = match (
        crate::captioning::Captioner::new(effective.config),
        test_image(),
    ) {
        (Ok(captioner), Some(image)) => {
            let settings = crate::domain::CaptionSettings::defaults();
            match tokio::time::timeout(limit, captioner.describe(&image, &settings, "", None)).await
            {
                Ok(Ok(text)) => Ok(text),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
            }
        }
        (Err(e), _) => Err(format!("the model's HTTP client could not be built: {e}")),
        (_, None) => Err("the test image could not be made".into()),
    };
    let test = serde_json::json!({
        "ok": outcome.is_ok(),
        "model": where_,
        "seconds": format!("{:.1}", started.elapsed().as_secs_f64()),
        "text": match &outcome { Ok(t) | Err(t) => t.clone() },
    });
    let defaults = state.settings.defaults().await?;
    render_with_test(&state, &admin, &RawSettings::from_settings(&defaults), test).await
}

async fn render_with_test(
    state: &AppState,
    admin: &AdminUser,
    values: &RawSettings,
    test: serde_json::Value,
) -> Result<HttpResponse, AppError> {
    let model = model_values(state).await?;
    render_inner(
        state,
        admin,
        None,
        StatusCode::OK,
        values,
        &[],
        model,
        &[],
        Some(test),
    )
    .await
}
