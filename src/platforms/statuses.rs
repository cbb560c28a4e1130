//! Reading a person's posts and downloading their images, as Mastodon and Pixelfed serve them:
//! `GET /api/v1/accounts/:id/statuses` (only_media, exclude_reblogs, limit 40), paged by the Link
//! header's `rel="next"`, or by `max_id` = the last id where an instance sends no Link header.
//! Rate limits are reported with how long to wait: Retry-After (seconds or an HTTP date), else
//! X-RateLimit-Reset.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{classify, InstanceClient, PlatformError};
use crate::config::Secret;
use crate::domain::InstanceUrl;

/// A page of statuses is at most this big (40 posts with their text and media).
const MAX_PAGE_BODY: usize = 8 << 20;
pub const PAGE_SIZE: usize = 40;
/// Attachments taken from one post (Mastodon allows 4, Pixelfed up to 20); a post claiming more is
/// not believed.
const MAX_MEDIA_PER_POST: usize = 20;
/// The post's text kept with each draft, in characters (Mastodon's default limit is 500).
const MAX_POST_TEXT: usize = 5000;
/// When an instance says to wait without saying how long.
const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Media {
    pub id: String,
    /// image, video, gifv, audio or unknown.
    pub kind: String,
    pub url: String,
    pub preview_url: String,
    pub description: Option<String>,
}

impl Media {
    pub fn is_image(&self) -> bool {
        self.kind == "image"
    }

    /// No description on the instance: none, empty or blank.
    pub fn undescribed(&self) -> bool {
        self.description
            .as_deref()
            .is_none_or(|d| d.trim().is_empty())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub id: String,
    /// The author's account id (a home stream carries other people's posts too).
    #[serde(default)]
    pub account_id: Option<String>,
    /// When it was posted (seconds), when the instance said in a form we read.
    #[serde(default)]
    pub created_at: Option<i64>,
    pub url: String,
    /// The post's text, without its HTML.
    pub text: String,
    pub language: Option<String>,
    pub is_reblog: bool,
    pub media: Vec<Media>,
}

#[derive(Debug)]
pub struct Page {
    pub statuses: Vec<Status>,
    /// The next (older) page's address from the Link header, when the instance sent one.
    pub next: Option<String>,
    /// The instance said this was the last request allowed for now: wait this long first.
    pub pause: Option<Duration>,
}

/// Where to read from: the start of the timeline, a Link address, older than a post, or the posts
/// newer than `since` (and older than `below`, for the next page of them).
#[derive(Clone, Debug)]
pub enum Cursor {
    Start,
    Link(String),
    OlderThan(String),
    Newer {
        since: String,
        below: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the image is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the image could not be downloaded: {0}")]
    Failed(String),
}

#[derive(Deserialize)]
struct RawMedia {
    id: serde_json::Value,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    preview_url: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct RawStatus {
    id: serde_json::Value,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    reblog: Option<serde_json::Value>,
    #[serde(default)]
    media_attachments: Vec<RawMedia>,
    #[serde(default)]
    account: Option<RawAccount>,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct RawAccount {
    id: serde_json::Value,
}

/// An address from the instance that is shown on our pages (a link, an image): only http(s), at
/// most 2 KB; anything else (a `javascript:` link, say) becomes empty.
fn web_url(text: Option<String>) -> String {
    text.filter(|t| t.len() <= 2048)
        .and_then(|t| url::Url::parse(&t).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .map(String::from)
        .unwrap_or_default()
}

fn id_text(value: &serde_json::Value) -> Option<String> {
    let id = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    ((1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())).then_some(id)
}

impl RawStatus {
    fn into_status(self) -> Option<Status> {
        let id = id_text(&self.id)?;
        let media = self
            .media_attachments
            .into_iter()
            .take(MAX_MEDIA_PER_POST)
            .filter_map(|m| {
                let url = web_url(m.url);
                let preview_url = match web_url(m.preview_url) {
                    preview if preview.is_empty() => url.clone(),
                    preview => preview,
                };
                Some(Media {
                    id: id_text(&m.id)?,
                    kind: m
                        .kind
                        .filter(|k| k.len() <= 32)
                        .unwrap_or_else(|| "unknown".into()),
                    preview_url,
                    url,
                    description: m.description,
                })
            })
            .collect();
        Some(Status {
            id,
            account_id: self.account.and_then(|a| id_text(&a.id)),
            created_at: self.created_at.as_deref().and_then(|t| {
                time::OffsetDateTime::parse(
                    t.trim(),
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
                .map(|t| t.unix_timestamp())
            }),
            url: match web_url(self.url) {
                url if url.is_empty() => web_url(self.uri),
                url => url,
            },
            text: html_to_text(self.content.as_deref().unwrap_or(""))
                .chars()
                .take(MAX_POST_TEXT)
                .collect(),
            language: self.language.filter(|l| {
                (2..=16).contains(&l.len())
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }),
            is_reblog: self.reblog.is_some_and(|r| !r.is_null()),
            media,
        })
    }
}

/// Whether post id `a` is older than `b`. Mastodon's ids are numbers in text (longer is newer);
/// others (GoToSocial's ULIDs) sort as text.
pub fn older(a: &str, b: &str) -> bool {
    id_key(a) < id_key(b)
}

/// A total order of ids: numbers by value (their text without leading zeros, by length, then
/// digits), then any other text as text. An instance mixing both cannot make a run go round.
fn id_key(id: &str) -> (bool, usize, &str) {
    let numeric = !id.is_empty() && id.bytes().all(|c| c.is_ascii_digit());
    if numeric {
        let digits = id.trim_start_matches('0');
        (false, digits.len(), digits)
    } else {
        (true, 0, id)
    }
}

/// A status as a stream event carries it (JSON); None when it is not one we can read.
pub fn parse_status(json: &str) -> Option<Status> {
    serde_json::from_str::<RawStatus>(json)
        .ok()
        .and_then(RawStatus::into_status)
}

/// A post's HTML as plain text: line breaks for <br> and paragraph ends, tags dropped, the common
/// entities decoded. Good enough for a prompt's context and a reviewer's reminder of the post.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        if tag.starts_with("br") || tag == "/p" {
            out.push('\n');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    let decoded = decode_entities(&out);
    decoded
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        .chars()
        .filter(|c| !crate::domain::is_hidden_control(*c) || *c == '\n')
        .collect()
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp..];
        let end = after.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &after[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                _ if name.starts_with("#x") => u32::from_str_radix(&name[2..], 16)
                    .ok()
                    .and_then(char::from_u32),
                _ if name.starts_with('#') => name[1..].parse().ok().and_then(char::from_u32),
                _ => None,
            }?;
            Some((c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = &after[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The Link header's `rel="next"` address.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|part| {
            let (target, params) = part.split_once(';')?;
            let is_next = params
                .split(';')
                .any(|p| p.trim().replace(' ', "") == "rel=\"next\"" || p.trim() == "rel=next");
            let target = target.trim();
            (is_next && target.starts_with('<') && target.ends_with('>'))
                .then(|| target[1..target.len() - 1].to_owned())
        })
}

/// How long the instance asks us to wait: Retry-After (seconds or an HTTP date), else the
/// X-RateLimit-Reset time.
pub fn rate_wait(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let now = time::OffsetDateTime::now_utc();
    if let Some(value) = headers.get("retry-after").and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(Duration::from_secs(seconds));
        }
        if let Ok(at) =
            time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822)
        {
            return Some(Duration::from_secs_f64(
                (at - now).as_seconds_f64().max(0.0),
            ));
        }
    }
    let reset = headers
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok())?;
    let at =
        time::OffsetDateTime::parse(reset.trim(), &time::format_description::well_known::Rfc3339)
            .ok()?;
    Some(Duration::from_secs_f64(
        (at - now).as_seconds_f64().max(0.0),
    ))
}

/// The wait before the next request when this answer used the last one allowed.
fn pause_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let remaining: i64 = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())?;
    if remaining > 0 {
        return None;
    }
    Some(rate_wait(headers).unwrap_or(DEFAULT_RATE_WAIT))
}

impl InstanceClient {
    /// One page of the account's posts with media.
    pub async fn statuses(
        &self,
        instance: &InstanceUrl,
        token: &Secret<String>,
        account_id: &str,
        cursor: &Cursor,
    ) -> Result<Page, PlatformError> {
        let base = instance.join(&format!("/api/v1/accounts/{account_id}/statuses"));
        let url = match cursor {
            // Only a Link on the instance itself is followed (the caller pages by max_id instead).
            Cursor::Link(link) if same_origin(link, instance) => link.clone(),
            _ => {
                let mut url = url::Url::parse(&base).map_err(|_| PlatformError::NotMastodonApi)?;
                url.query_pairs_mut()
                    .append_pair("only_media", "true")
                    .append_pair("exclude_reblogs", "true")
                    .append_pair("limit", &PAGE_SIZE.to_string());
                match cursor {
                    Cursor::OlderThan(id) => {
                        url.query_pairs_mut().append_pair("max_id", id);
                    }
                    Cursor::Newer { since, below } => {
                        url.query_pairs_mut().append_pair("since_id", since);
                        if let Some(below) = below {
                            url.query_pairs_mut().append_pair("max_id", below);
                        }
                    }
                    _ => {}
                }
                url.to_string()
            }
        };
        let parsed = url::Url::parse(&url).map_err(|_| PlatformError::NotMastodonApi)?;
        self.policy()
            .check_url(&parsed)
            .map_err(|_| PlatformError::PrivateAddress)?;
        let mut response = self
            .http
            .get(parsed)
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status().as_u16();
        match status {
            200..=299 => {}
            401 | 403 => return Err(PlatformError::InvalidToken),
            404 | 405 | 410 => return Err(PlatformError::NotMastodonApi),
            429 => {
                return Err(PlatformError::RateLimited {
                    retry_after: Some(
                        rate_wait(response.headers())
                            .unwrap_or(DEFAULT_RATE_WAIT)
                            .as_secs_f64()
                            .ceil() as u64,
                    ),
                })
            }
            status => return Err(PlatformError::Instance { status }),
        }
        let next = next_link(response.headers());
        let pause = pause_after(response.headers());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_PAGE_BODY {
                return Err(PlatformError::NotMastodonApi);
            }
        }
        let raw: Vec<RawStatus> =
            serde_json::from_slice(&body).map_err(|_| PlatformError::NotMastodonApi)?;
        Ok(Page {
            statuses: raw.into_iter().filter_map(RawStatus::into_status).collect(),
            next,
            pause,
        })
    }

    /// An image, at most `max_bytes` long, through the private-address guard.
    pub async fn download(&self, url: &str, max_bytes: u64) -> Result<Vec<u8>, DownloadError> {
        let parsed = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| DownloadError::Failed("the image address is not valid".into()))?;
        self.policy().check_url(&parsed).map_err(|_| {
            DownloadError::Failed(
                "the image is on a private, loopback or link-local address".into(),
            )
        })?;
        let mut response = self
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| DownloadError::Failed(classify(e).to_string()))?;
        if !response.status().is_success() {
            return Err(DownloadError::Failed(format!(
                "the server answered HTTP {}",
                response.status().as_u16()
            )));
        }
        if response.content_length().is_some_and(|n| n > max_bytes) {
            return Err(DownloadError::TooLarge(max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| DownloadError::Failed(classify(e).to_string()))?
        {
            if (body.len() + chunk.len()) as u64 > max_bytes {
                return Err(DownloadError::TooLarge(max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Whether a Link address is on the instance itself (others are not followed).
pub fn same_origin(link: &str, instance: &InstanceUrl) -> bool {
    url::Url::parse(link).is_ok_and(|u| u.origin() == instance.url().origin())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn the_next_link_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "link",
            HeaderValue::from_static(
                "<https://m.example/api/v1/accounts/1/statuses?max_id=7>; rel=\"next\", \
                 <https://m.example/api/v1/accounts/1/statuses?min_id=9>; rel=\"prev\"",
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://m.example/api/v1/accounts/1/statuses?max_id=7")
        );
        headers.insert(
            "link",
            HeaderValue::from_static("<https://m.example/x?min_id=9>; rel=\"prev\""),
        );
        assert_eq!(next_link(&headers), None);
    }

    #[test]
    fn waits_come_from_retry_after_or_the_reset_time() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(rate_wait(&headers), Some(Duration::from_secs(3)));
        let mut headers = HeaderMap::new();
        let reset = (time::OffsetDateTime::now_utc() + time::Duration::seconds(30))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        headers.insert("x-ratelimit-reset", HeaderValue::from_str(&reset).unwrap());
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let wait = pause_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("12"));
        assert_eq!(pause_after(&headers), None);
    }

    #[test]
    fn only_web_addresses_are_kept() {
        assert_eq!(web_url(Some("javascript:alert(1)".into())), "");
        assert_eq!(web_url(Some("data:text/html,x".into())), "");
        assert_eq!(
            web_url(Some("https://m.example/@a/1".into())),
            "https://m.example/@a/1"
        );
        assert_eq!(web_url(None), "");
    }

    #[test]
    fn post_html_becomes_plain_text() {
        assert_eq!(
            html_to_text(
                "<p>Sunset &amp; sea<br>at <a href=\"x\">#beach</a></p><p>2nd &#8212; &lt;3</p>"
            ),
            "Sunset & sea\nat #beach\n2nd \u{2014} <3"
        );
    }
}
