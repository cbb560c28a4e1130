//! The context every page template gets: title, the signed-in person (or none), their CSRF token,
//! and the flash messages to show once.
//!
//! A page's context is kept as JSON text while it is built. That text is the whole input of the
//! render, so a page whose text was rendered before (same template, same text) is served from the
//! render memo in `templates` without running Tera again.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use actix_web_flash_messages::{IncomingFlashMessages, Level};
use serde::Serialize;

use crate::auth::SessionUser;
use crate::error::AppError;

#[derive(Serialize)]
struct Flash {
    level: &'static str,
    text: String,
}

#[derive(Serialize)]
struct PageUser<'a> {
    username: &'a str,
    is_admin: bool,
}

pub struct Page {
    /// The context as a JSON object's text, without its closing brace.
    json: Vec<u8>,
    /// A value that could not be turned into JSON; the render reports it.
    failed: Option<String>,
}

impl Page {
    pub fn new(
        title: &str,
        user: Option<&SessionUser>,
        flashes: Option<&IncomingFlashMessages>,
    ) -> Page {
        let mut page = Page {
            json: Vec::with_capacity(1024),
            failed: None,
        };
        page.json.push(b'{');
        page = page.with("title", &title);
        if let Some(user) = user {
            page = page
                .with(
                    "user",
                    &PageUser {
                        username: &user.username,
                        is_admin: user.is_admin(),
                    },
                )
                .with("csrf_token", &user.csrf);
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
        page.with("flashes", &flashes)
    }

    /// Adds (or, for a key given again, replaces) one value of the context.
    pub fn with(mut self, key: &str, value: &impl Serialize) -> Page {
        if self.json.len() > 1 {
            self.json.push(b',');
        }
        let written = serde_json::to_writer(&mut self.json, key)
            .and_then(|()| {
                self.json.push(b':');
                serde_json::to_writer(&mut self.json, value)
            })
            .map_err(|e| format!("the context value {key:?}: {e}"));
        if let Err(e) = written {
            self.failed.get_or_insert(e);
        }
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

    fn rendered(
        self,
        tera: &tera::Tera,
        template: &str,
    ) -> Result<actix_web::web::Bytes, AppError> {
        let rendered = match self.failed {
            Some(e) => Err(e),
            None => {
                let mut json = self.json;
                json.push(b'}');
                crate::web::templates::render_memoized(tera, template, json)
            }
        };
        rendered.map_err(|e| AppError::Internal(anyhow::anyhow!("rendering {template}: {e}")))
    }

    /// The rendered text alone (a part of a page that a script puts in place).
    pub fn render_text(self, tera: &tera::Tera, template: &str) -> Result<String, AppError> {
        self.rendered(tera, template)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The page, rendered with the templates built at start (`AppState::templates`).
    pub fn render(self, tera: &tera::Tera, template: &str) -> Result<HttpResponse, AppError> {
        self.render_status(tera, StatusCode::OK, template)
    }

    pub fn render_status(
        self,
        tera: &tera::Tera,
        status: StatusCode,
        template: &str,
    ) -> Result<HttpResponse, AppError> {
        let body = self.rendered(tera, template)?;
        Ok(HttpResponse::build(status)
            .insert_header((
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ))
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .body(body))
    }
}
