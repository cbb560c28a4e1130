//! Writing descriptions back, as each platform allows it.
//!
//! - Mastodon refuses `PUT /api/v1/media/:id` once the media is attached to a post, so the post is
//!   edited: `PUT /api/v1/statuses/:id` with the plain text and spoiler text from
//!   `GET /api/v1/statuses/:id/source`, sensitive and language as they are, every `media_ids[]` in
//!   its order (leaving them out strips the images) and `media_attributes[]` (id, description,
//!   focus) for each; no poll fields (a post with media has no poll).
//! - Pixelfed takes `PUT /api/v1/media/:id` with the description on attached media.
//!
//! Every answer is sorted into what the publishing job does next: a passing failure (the network,
//! a 5xx, a 429) is tried again later; a 404 means the post is gone; a 401 or 403, the token; a
//! 422, the instance's own words.

use std::time::Duration;

use serde::Deserialize;

use super::client::{classify, display_text, InstanceClient};
use super::statuses::rate_wait;
use crate::config::Secret;
use crate::domain::InstanceUrl;

/// An answer about one post is at most this big.
const MAX_BODY: usize = 2 << 20;
/// When a failing instance says nothing about when to come back, the job's own backoff decides.
const DEFAULT_RETRY: Duration = Duration::ZERO;

#[derive(Debug, Clone, PartialEq)]
pub struct PostMedia {
    pub id: String,
    pub kind: String,
    pub description: Option<String>,
    /// The focal point, "x,y" as Mastodon takes it back.
    pub focus: Option<String>,
}

impl PostMedia {
    pub fn described(&self) -> bool {
        self.description
            .as_deref()
            .is_some_and(|d| !d.trim().is_empty())
    }
}

/// A post as it is on the instance now.
#[derive(Debug, Clone)]
pub struct Post {
    pub id: String,
    pub sensitive: bool,
    pub language: Option<String>,
    pub media: Vec<PostMedia>,
}

/// The post's text as its author wrote it (not the HTML). Both fields are required: an answer
/// without them would edit the post's text or content warning away.
#[derive(Debug, Clone, Deserialize)]
pub struct Source {
    pub text: String,
    pub spoiler_text: String,
    /// Servers with more than plain text (glitch-soc: text/markdown) say which; sent back as is.
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WriteError {
    #[error("the post no longer exists")]
    Gone,
    #[error("the instance refused fedialt's access: this connection needs a new token")]
    InvalidToken,
    #[error("the instance refused the change: {0}")]
    Refused(String),
    /// Worth trying again after `after`.
    #[error("{reason}")]
    Later { after: Duration, reason: String },
    /// 429: the account's rate limit is used up until `after` from now.
    #[error("the instance is rate limiting fedialt")]
    RateLimited { after: Duration },
}

/// What is left of the account's rate limit, from an answer's X-RateLimit headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub remaining: i64,
    pub reset_in: Duration,
}

/// What a call got: the body and the rate limit left.
struct Answer {
    body: Vec<u8>,
    budget: Option<Budget>,
}

/// The rate limit left, when the instance says (Mastodon: X-RateLimit-Remaining and -Reset).
fn budget(headers: &reqwest::header::HeaderMap) -> Option<Budget> {
    let remaining = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())?;
    Some(Budget {
        remaining,
        reset_in: rate_wait(headers).unwrap_or(Duration::from_secs(60)),
    })
}

#[derive(Deserialize)]
struct RawFocus {
    x: f64,
    y: f64,
}

#[derive(Deserialize, Default)]
struct RawMeta {
    #[serde(default)]
    focus: Option<RawFocus>,
}

#[derive(Deserialize)]
struct RawMedia {
    id: serde_json::Value,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    meta: Option<RawMeta>,
}

#[derive(Deserialize)]
struct RawPost {
    id: serde_json::Value,
    #[serde(default)]
    sensitive: bool,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    media_attachments: Vec<RawMedia>,
}

fn id_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl RawPost {
    fn into_post(self) -> Option<Post> {
        Some(Post {
            id: id_text(&self.id)?,
            sensitive: self.sensitive,
            language: self.language,
            media: self
                .media_attachments
                .into_iter()
                .map(|m| {
                    Some(PostMedia {
                        id: id_text(&m.id)?,
                        kind: m.kind.unwrap_or_else(|| "unknown".into()),
                        description: m.description,
                        focus: m
                            .meta
                            .and_then(|meta| meta.focus)
                            .filter(|f| f.x.is_finite() && f.y.is_finite())
                            .map(|f| format!("{},{}", f.x, f.y)),
                    })
                })
                .collect::<Option<Vec<_>>>()?,
        })
    }
}

/// The instance's own words from an error body ({"error": "…"}), fit to show.
fn instance_words(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Body {
        error: String,
    }
    serde_json::from_slice::<Body>(body)
        .ok()
        .map(|b| display_text(&b.error, 300))
        .filter(|t| !t.is_empty())
}

/// `{base}/api/v1/{collection}/{id}{tail}`, the id as one path segment whatever it holds; None for
/// an id that is no segment at all ("", ".", "..").
fn address(instance: &InstanceUrl, collection: &str, id: &str, tail: &[&str]) -> Option<url::Url> {
    if matches!(id, "" | "." | "..") {
        return None;
    }
    let mut url = url::Url::parse(&instance.join("/api/v1")).ok()?;
    {
        let mut segments = url.path_segments_mut().ok()?;
        segments.pop_if_empty().push(collection).push(id);
        for part in tail {
            segments.push(part);
        }
    }
    Some(url)
}

impl InstanceClient {
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        url: &url::Url,
    ) -> Result<Answer, WriteError> {
        self.policy().check_url(url).map_err(|_| {
            WriteError::Refused(
                "the instance is on a private, loopback or link-local address".into(),
            )
        })?;
        let mut response = request.send().await.map_err(|e| WriteError::Later {
            after: DEFAULT_RETRY,
            reason: classify(e).to_string(),
        })?;
        // A redirect would turn an edit into a GET that looks like success: not followed here.
        if response.url() != url {
            return Err(WriteError::Refused(
                "the instance redirected the request elsewhere".into(),
            ));
        }
        let status = response.status().as_u16();
        let budget = budget(response.headers());
        let wait = rate_wait(response.headers());
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY {
                        return Err(WriteError::Refused(
                            "the instance's answer was too large".into(),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(WriteError::Later {
                        after: DEFAULT_RETRY,
                        reason: classify(e).to_string(),
                    })
                }
            }
        }
        match status {
            200..=299 => Ok(Answer { body, budget }),
            401 | 403 => Err(WriteError::InvalidToken),
            404 | 410 => Err(WriteError::Gone),
            429 => Err(WriteError::RateLimited {
                after: wait.unwrap_or(Duration::from_secs(60)),
            }),
            500..=599 => Err(WriteError::Later {
                after: wait.unwrap_or(DEFAULT_RETRY),
                reason: format!("the instance answered with an error (HTTP {status})"),
            }),
            _ => Err(WriteError::Refused(
                instance_words(&body).unwrap_or_else(|| format!("HTTP {status}")),
            )),
        }
    }

    /// The post as it is now; with how long to wait before the next call when the instance said
    /// this was the last one allowed for now.
    pub async fn post(
        &self,
        instance: &InstanceUrl,
        token: &Secret<String>,
        id: &str,
    ) -> Result<(Post, Option<Budget>), WriteError> {
        let url = address(instance, "statuses", id, &[]).ok_or(WriteError::Gone)?;
        let answer = self
            .call(self.http.get(url.clone()).bearer_auth(token.expose()), &url)
            .await?;
        let post = serde_json::from_slice::<RawPost>(&answer.body)
            .ok()
            .and_then(RawPost::into_post)
            .filter(|post| post.id == id)
            .ok_or_else(|| WriteError::Refused("the instance's answer was not this post".into()))?;
        Ok((post, answer.budget))
    }

    /// The post's source (Mastodon).
    pub async fn source(
        &self,
        instance: &InstanceUrl,
        token: &Secret<String>,
        id: &str,
    ) -> Result<(Source, Option<Budget>), WriteError> {
        let url = address(instance, "statuses", id, &["source"]).ok_or(WriteError::Gone)?;
        let answer = self
            .call(self.http.get(url.clone()).bearer_auth(token.expose()), &url)
            .await?;
        let source = serde_json::from_slice::<Source>(&answer.body).map_err(|_| {
            WriteError::Refused("the instance's answer was not a post's source".into())
        })?;
        Ok((source, answer.budget))
    }

    /// Edits a Mastodon post: its text and everything else as they are, every media attachment
    /// kept in order, the descriptions in `descriptions` (media id → text) set.
    pub async fn edit_post(
        &self,
        instance: &InstanceUrl,
        token: &Secret<String>,
        post: &Post,
        source: &Source,
        descriptions: &std::collections::HashMap<String, String>,
    ) -> Result<Option<Budget>, WriteError> {
        let url = address(instance, "statuses", &post.id, &[]).ok_or(WriteError::Gone)?;
        let body = edit_body(post, source, descriptions);
        let answer = self
            .call(
                self.http
                    .put(url.clone())
                    .bearer_auth(token.expose())
                    .json(&body),
                &url,
            )
            .await?;
        Ok(answer.budget)
    }

    /// Sets one attachment's description (Pixelfed).
    pub async fn describe_media(
        &self,
        instance: &InstanceUrl,
        token: &Secret<String>,
        media_id: &str,
        description: &str,
    ) -> Result<Option<Budget>, WriteError> {
        let url = address(instance, "media", media_id, &[]).ok_or(WriteError::Gone)?;
        let answer = self
            .call(
                self.http
                    .put(url.clone())
                    .bearer_auth(token.expose())
                    .form(&[("description", description)]),
                &url,
            )
            .await?;
        Ok(answer.budget)
    }
}

/// The body of a Mastodon edit that changes only the given descriptions.
pub fn edit_body(
    post: &Post,
    source: &Source,
    descriptions: &std::collections::HashMap<String, String>,
) -> serde_json::Value {
    let attributes: Vec<serde_json::Value> = post
        .media
        .iter()
        .map(|m| {
            let mut attribute = serde_json::json!({ "id": m.id });
            if let Some(text) = descriptions.get(&m.id).or(m.description.as_ref()) {
                attribute["description"] = text.clone().into();
            }
            if let Some(focus) = &m.focus {
                attribute["focus"] = focus.clone().into();
            }
            attribute
        })
        .collect();
    let mut body = serde_json::json!({
        "status": source.text,
        "spoiler_text": source.spoiler_text,
        "sensitive": post.sensitive,
        "media_ids": post.media.iter().map(|m| m.id.clone()).collect::<Vec<_>>(),
        "media_attributes": attributes,
    });
    if let Some(language) = &post.language {
        body["language"] = language.clone().into();
    }
    if let Some(content_type) = &source.content_type {
        body["content_type"] = content_type.clone().into();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_keeps_everything_but_the_new_descriptions() {
        let post = Post {
            id: "9".into(),
            sensitive: true,
            language: Some("de".into()),
            media: vec![
                PostMedia {
                    id: "a".into(),
                    kind: "image".into(),
                    description: None,
                    focus: Some("0.5,-0.25".into()),
                },
                PostMedia {
                    id: "b".into(),
                    kind: "image".into(),
                    description: Some("kept".into()),
                    focus: None,
                },
            ],
        };
        let source = Source {
            text: "Hallo #welt".into(),
            spoiler_text: "cw".into(),
            content_type: None,
        };
        let new = [("a".to_owned(), "A fox".to_owned())].into_iter().collect();
        let body = edit_body(&post, &source, &new);
        assert_eq!(
            body,
            serde_json::json!({
                "status": "Hallo #welt", "spoiler_text": "cw", "sensitive": true, "language": "de",
                "media_ids": ["a", "b"],
                "media_attributes": [
                    {"id": "a", "description": "A fox", "focus": "0.5,-0.25"},
                    {"id": "b", "description": "kept"}
                ]
            })
        );
        assert!(body.get("poll").is_none());
    }

    #[test]
    fn odd_ids_stay_one_path_segment() {
        let instance = InstanceUrl::parse("https://example.social", |_| true).unwrap();
        let url = address(&instance, "statuses", "1/../../admin?x", &["source"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://example.social/api/v1/statuses/1%2F..%2F..%2Fadmin%3Fx/source"
        );
        for id in ["", ".", ".."] {
            assert!(address(&instance, "media", id, &[]).is_none(), "{id:?}");
        }
    }

    #[test]
    fn a_source_without_its_text_is_not_a_source() {
        assert!(serde_json::from_str::<Source>(r#"{"spoiler_text": ""}"#).is_err());
        assert!(serde_json::from_str::<Source>(r#"{"text": "hi"}"#).is_err());
        let s: Source = serde_json::from_str(r#"{"text": "", "spoiler_text": ""}"#).unwrap();
        assert_eq!(s.text, "");
    }
}
