//! Mastodon's streaming API, as server-sent events: `GET /api/v1/streaming/user` with the token in
//! the Authorization header, at the streaming host the instance names (v2 instance
//! `configuration.urls.streaming`, else v1 `urls.streaming_api`, else the instance itself). Events
//! are `event:` and `data:` lines ended by a blank line; lines starting with `:` are heartbeats.

use std::time::Duration;

use super::client::{classify, InstanceClient, PlatformError};
use super::statuses::rate_wait;
use crate::config::Secret;
use crate::domain::InstanceUrl;

/// An event's data is at most this long (a status with its media, generously); a stream sending
/// more is dropped and opened again.
const MAX_EVENT: usize = 1 << 20;
/// A stream is opened again after this long, whatever happens (a bound on any one request).
const LONGEST_STREAM: Duration = Duration::from_secs(24 * 3600);

/// One server-sent event.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

/// Turns the bytes of a stream into events, whatever the chunks' borders.
#[derive(Default)]
pub struct SseParser {
    line: Vec<u8>,
    name: String,
    data: String,
}

#[derive(Debug)]
pub struct TooLong;

impl SseParser {
    /// Feeds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLong> {
        let mut events = Vec::new();
        for &byte in chunk {
            if byte != b'\n' {
                self.line.push(byte);
                if self.line.len() + self.data.len() > MAX_EVENT {
                    return Err(TooLong);
                }
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                if !self.data.is_empty() || !self.name.is_empty() {
                    let name = std::mem::take(&mut self.name);
                    events.push(Event {
                        name: if name.is_empty() {
                            "message".into()
                        } else {
                            name
                        },
                        data: std::mem::take(&mut self.data),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // a heartbeat or comment
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => self.name = value.to_owned(),
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                _ => {}
            }
        }
        Ok(events)
    }
}

/// A websocket address as the HTTP one serving the same API (wss → https, ws → http).
fn http_of(address: &str) -> Option<String> {
    let mut url = url::Url::parse(address.trim()).ok()?;
    let scheme = match url.scheme() {
        "wss" | "https" => "https",
        "ws" | "http" => "http",
        _ => return None,
    };
    url.set_scheme(scheme).ok()?;
    url.set_query(None);
    url.set_fragment(None);
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    Some(url.as_str().trim_end_matches('/').to_owned())
}

impl InstanceClient {
    /// Where the instance serves its streaming API (without a trailing slash).
    pub async fn streaming_base(&self, instance: &InstanceUrl) -> Result<String, PlatformError> {
        let v2 = instance.join("/api/v2/instance");
        if let Ok(value) = self.get_json(&v2).await {
            if let Some(found) = value
                .pointer("/configuration/urls/streaming")
                .and_then(|v| v.as_str())
                .and_then(http_of)
            {
                return Ok(found);
            }
        }
        let v1 = instance.join("/api/v1/instance");
        match self.get_json(&v1).await {
            Ok(value) => {
                if let Some(found) = value
                    .pointer("/urls/streaming_api")
                    .and_then(|v| v.as_str())
                    .and_then(http_of)
                {
                    return Ok(found);
                }
            }
            Err(e @ (PlatformError::Unreachable(_) | PlatformError::PrivateAddress)) => {
                return Err(e)
            }
            Err(_) => {}
        }
        Ok(instance.url().as_str().trim_end_matches('/').to_owned())
    }

    async fn get_json(&self, url: &str) -> Result<serde_json::Value, PlatformError> {
        let parsed = url::Url::parse(url).map_err(|_| PlatformError::NotMastodonApi)?;
        self.policy()
            .check_url(&parsed)
            .map_err(|_| PlatformError::PrivateAddress)?;
        let response = self.http.get(parsed).send().await.map_err(classify)?;
        if !response.status().is_success() {
            return Err(PlatformError::Instance {
                status: response.status().as_u16(),
            });
        }
        let body = response.bytes().await.map_err(classify)?;
        if body.len() > 1 << 20 {
            return Err(PlatformError::NotMastodonApi);
        }
        serde_json::from_slice(&body).map_err(|_| PlatformError::NotMastodonApi)
    }

    /// Opens the person's user stream; the response's body is the event stream.
    pub async fn user_stream(
        &self,
        base: &str,
        token: &Secret<String>,
    ) -> Result<reqwest::Response, PlatformError> {
        let url = format!("{base}/api/v1/streaming/user");
        let parsed = url::Url::parse(&url).map_err(|_| PlatformError::NotMastodonApi)?;
        self.policy()
            .check_url(&parsed)
            .map_err(|_| PlatformError::PrivateAddress)?;
        let response = self
            .http
            .get(parsed)
            .bearer_auth(token.expose())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .timeout(LONGEST_STREAM)
            .send()
            .await
            .map_err(classify)?;
        match response.status().as_u16() {
            200..=299 => {
                let is_events = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/event-stream"));
                if is_events {
                    Ok(response)
                } else {
                    Err(PlatformError::NotMastodonApi)
                }
            }
            401 | 403 => Err(PlatformError::InvalidToken),
            429 => Err(PlatformError::RateLimited {
                retry_after: Some(
                    rate_wait(response.headers())
                        .unwrap_or(Duration::from_secs(60))
                        .as_secs_f64()
                        .ceil() as u64,
                ),
            }),
            404 | 405 | 410 => Err(PlatformError::NotMastodonApi),
            status => Err(PlatformError::Instance { status }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_whole_whatever_the_chunks() {
        let text = ":thump\n\nevent: update\ndata: {\"id\":\"1\"}\n\nevent: delete\r\ndata: 42\r\n\r\n:thump\n";
        for size in [1, 2, 3, 7, text.len()] {
            let mut parser = SseParser::default();
            let mut events = Vec::new();
            for chunk in text.as_bytes().chunks(size) {
                events.extend(parser.push(chunk).unwrap());
            }
            assert_eq!(
                events,
                vec![
                    Event {
                        name: "update".into(),
                        data: "{\"id\":\"1\"}".into()
                    },
                    Event {
                        name: "delete".into(),
                        data: "42".into()
                    }
                ],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn an_endless_line_is_refused_not_kept() {
        let mut parser = SseParser::default();
        let chunk = vec![b'a'; 64 * 1024];
        let mut refused = false;
        for _ in 0..20 {
            if parser.push(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a line over the limit is refused");
    }

    #[test]
    fn streaming_addresses_become_http() {
        assert_eq!(
            http_of("wss://streaming.example.social").as_deref(),
            Some("https://streaming.example.social")
        );
        assert_eq!(
            http_of("ws://127.0.0.1:4000/").as_deref(),
            Some("http://127.0.0.1:4000")
        );
        assert_eq!(http_of("ftp://x"), None);
        assert_eq!(http_of("wss://user:pw@x.example"), None);
    }
}
