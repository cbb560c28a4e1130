//! The context every page template gets: title, the signed-in person (or none), their CSRF token,
//! and the flash messages to show once.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use actix_web_flash_messages::{IncomingFlashMessages, Level};
use serde::Serialize;

use crate::auth::SessionUser;
use crate::routes::error::AppError;

#[derive(Serialize)]
struct Flash {
    level: &'static str,
    text: String,
}

pub struct Page {
    context: tera::Context,
}

impl Page {
    pub fn new(
        title: &str,
        user: Option<&SessionUser>,
        flashes: Option<&IncomingFlashMessages>,
    ) -> Page {
        let mut context = tera::Context::new();
        context.insert("title", title);
        if let Some(user) = user {
            context.insert(
                "user",
                &serde_json::json!({
                    "username": user.username,
                    "is_admin": user.is_admin(),
                }),
            );
            context.insert("csrf_token", &user.csrf);
        }
        let flashes: Vec<Flash> = flashes
            .map(|f| {
                f.iter()
                    .map(|m| Flash {
                        level: match m.level() {
                            Level::Error => "error",
                            Level::Warning => "warning",
                            Level::Success => "success",
                            _ => "info",
                        },
                        text: m.content().to_owned(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        context.insert("flashes", &flashes);
        Page { context }
    }

    pub fn with(mut self, key: &str, value: &impl Serialize) -> Page {
        self.context.insert(key, value);
        self
    }

    /// A refused form's problems, for the error summary: each field (its id) and its message.
    pub fn with_errors(self, errors: &[(&str, String)]) -> Page {
        let list: Vec<serde_json::Value> = errors
            .iter()
            .map(|(field, message)| serde_json::json!({"field": field, "message": message}))
            .collect();
        self.with("errors", &list)
    }

    pub fn render(self, template: &str) -> Result<HttpResponse, AppError> {
        self.render_status(StatusCode::OK, template)
    }

    pub fn render_status(
        self,
        status: StatusCode,
        template: &str,
    ) -> Result<HttpResponse, AppError> {
        let body = crate::web::templates::render(template, &self.context)
            .map_err(|e| AppError::Internal(anyhow::anyhow!("rendering {template}: {e}")))?;
        Ok(HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .body(body))
    }
}
