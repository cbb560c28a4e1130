//! The vision model: Ollama (`POST {base}/api/chat`, the image as bare base64, stream false) or an
//! OpenAI-compatible chat completions endpoint (`POST {base}/chat/completions`, the image as a data
//! URL). Transient failures (no connection, a timeout, a 5xx) are retried with backoff; a 4xx is
//! the model server refusing the request and is not.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;

use crate::config::{CaptionBackend, CaptionConfig};
use crate::domain::CaptionSettings;

pub mod cleanup;
pub mod images;
pub mod ollama;
pub mod openai;
pub mod prompt;

/// What differs between the model servers: where to post, what to send, where the text is.
pub trait Backend: Send + Sync {
    fn url(&self, base: &str) -> String;
    fn body(&self, model: &str, prompt: &str, image_b64: &str) -> Value;
    fn text<'a>(&self, answer: &'a Value) -> Option<&'a str>;
}

/// Tries of one model call before the image is marked failed.
const TRIES: u32 = 3;
const MAX_ANSWER: usize = 1 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// The model server cannot be reached at all (nothing listens at CAPTION_BASE_URL): not this
    /// image's fault, so the run waits and tries again later rather than failing its images.
    #[error("{0}")]
    Unreachable(String),
    /// Worth another try: a timeout, a 5xx, a dropped connection.
    #[error("{0}")]
    Transient(String),
    /// The model server refused the request (4xx), or answered with something unusable.
    #[error("{0}")]
    Refused(String),
}

#[derive(Clone)]
pub struct Captioner {
    http: reqwest::Client,
    config: CaptionConfig,
    backend: std::sync::Arc<dyn Backend>,
    backoff: Duration,
}

impl Captioner {
    pub fn new(config: CaptionConfig) -> Result<Captioner, reqwest::Error> {
        // The model's address is the admin's configuration, not user input: no private-address
        // guard (Ollama usually runs on localhost), and no proxy from the environment.
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .timeout(config.timeout)
            .user_agent(concat!("fedialt/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let backend: std::sync::Arc<dyn Backend> = match config.backend {
            CaptionBackend::Ollama => std::sync::Arc::new(ollama::Ollama),
            CaptionBackend::OpenAi => std::sync::Arc::new(openai::OpenAi),
        };
        Ok(Captioner {
            http,
            config,
            backend,
            backoff: Duration::from_millis(500),
        })
    }

    pub fn model(&self) -> &str {
        &self.config.model
    }

    pub fn concurrency(&self) -> usize {
        self.config.concurrency.max(1) as usize
    }

    /// A description of `image` for a post in `language` with `post_text`, within the settings'
    /// lengths (already clamped to the instance's limit); cleaned and cut to fit.
    pub async fn describe(
        &self,
        image: &[u8],
        settings: &CaptionSettings,
        post_text: &str,
        language: Option<&str>,
    ) -> Result<String, ModelError> {
        let prompt = prompt::build(settings, post_text, language);
        let encoded = STANDARD.encode(image);
        let mut wait = self.backoff;
        let mut attempt = 1;
        loop {
            match self.call(&prompt, &encoded).await {
                Ok(text) => {
                    let cleaned = cleanup::clean(&text, settings.max_caption_length as usize);
                    if cleaned.is_empty() {
                        return Err(ModelError::Refused(
                            "the model answered with no description".into(),
                        ));
                    }
                    return Ok(cleaned);
                }
                Err(ModelError::Transient(reason) | ModelError::Unreachable(reason))
                    if attempt < TRIES =>
                {
                    tracing::info!(attempt, reason = %reason, "model call failed; trying again");
                    // With jitter, so the calls that failed together do not come back together.
                    let jitter = rand::random::<f64>() * 0.5;
                    tokio::time::sleep(wait.mul_f64(1.0 + jitter)).await;
                    wait *= 2;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn call(&self, prompt: &str, image_b64: &str) -> Result<String, ModelError> {
        let base = self.config.base_url.as_str().trim_end_matches('/');
        let url = self.backend.url(base);
        let body = self.backend.body(&self.config.model, prompt, image_b64);
        let mut request = self.http.post(&url).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose());
        }
        let mut response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                ModelError::Transient(format!(
                    "the model did not answer within {} s",
                    self.config.timeout.as_secs()
                ))
            } else if e.is_connect() {
                ModelError::Unreachable(format!(
                    "the vision model at {base} could not be reached (is it running? \
                     CAPTION_BASE_URL says where it is)"
                ))
            } else {
                ModelError::Transient("the request to the model server failed".into())
            }
        })?;
        let status = response.status().as_u16();
        let mut raw = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    raw.extend_from_slice(&chunk);
                    if raw.len() > MAX_ANSWER {
                        return Err(ModelError::Refused("the model's answer is too long".into()));
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => {
                    return Err(ModelError::Transient(format!(
                        "the model did not answer within {} s",
                        self.config.timeout.as_secs()
                    )))
                }
                Err(_) => {
                    return Err(ModelError::Transient(
                        "the model server closed the connection".into(),
                    ))
                }
            }
        }
        let answer: Option<Value> = serde_json::from_slice(&raw).ok();
        let said = answer
            .as_ref()
            .and_then(|v| v.get("error"))
            .map(|e| match e {
                Value::String(s) => s.clone(),
                other => other
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            })
            .map(|s| {
                s.chars()
                    .filter(|c| !crate::domain::is_hidden_control(*c))
                    .take(200)
                    .collect::<String>()
            });
        match status {
            200..=299 => {}
            500..=599 => {
                return Err(ModelError::Transient(match said {
                    Some(s) if !s.is_empty() => {
                        format!("the model server failed (HTTP {status}): {s}")
                    }
                    _ => format!("the model server failed (HTTP {status})"),
                }))
            }
            _ => {
                return Err(ModelError::Refused(match said {
                    Some(s) if !s.is_empty() => {
                        format!("the model server refused the image (HTTP {status}): {s}")
                    }
                    _ => format!("the model server refused the image (HTTP {status})"),
                }))
            }
        }
        let text = answer.as_ref().and_then(|v| self.backend.text(v));
        text.map(str::to_owned).ok_or_else(|| {
            ModelError::Refused("the model server's answer had no description in it".into())
        })
    }
}
