//! A fake vision model server speaking Ollama's `/api/chat` (stream false, images as bare base64)
//! and the OpenAI-compatible `/v1/chat/completions`, with Ollama's error shapes. It reads which
//! image it was sent (the fake instance's images carry their media id), counts requests per image,
//! and can be held, slowed or made to fail.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};

#[derive(Default)]
pub struct ModelState {
    /// Requests per media id (read from the image).
    pub calls: HashMap<String, usize>,
    /// Every request body, in order.
    pub requests: Vec<Value>,
    /// Every image sent, as the model saw it.
    pub seen: Vec<Seen>,
    /// The Authorization header of every request.
    pub authorization: Vec<Option<String>>,
    /// When a request arrived and (if it was answered) when it was answered, per media id.
    pub times: Vec<(String, Instant)>,
    /// Requests whose client went away before the answer (dropped by a cancel).
    pub dropped: usize,
    /// Requests now being answered.
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// When set, each request waits for a permit here first.
    pub hold: Option<Arc<tokio::sync::Semaphore>>,
    /// Each request takes this long.
    pub delay: Duration,
    /// Answer every request with this status and Ollama's error body.
    pub fail_with: Option<(u16, String)>,
    /// The first this many requests answer 500.
    pub fail_first: usize,
    /// Images whose requests always answer 500.
    pub fail_media: Vec<String>,
    /// What the model says; `{id}` is replaced by the media id.
    pub answer: String,
}

pub struct FakeModel {
    pub url: String,
    pub state: Arc<Mutex<ModelState>>,
    server: actix_web::dev::ServerHandle,
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        let handle = self.server.clone();
        tokio::spawn(async move { handle.stop(false).await });
    }
}

/// Counts a request as dropped unless it was answered.
struct Answering {
    state: Arc<Mutex<ModelState>>,
    answered: bool,
}

impl Drop for Answering {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap();
        state.in_flight -= 1;
        if !self.answered {
            state.dropped += 1;
        }
    }
}

impl FakeModel {
    pub async fn start() -> FakeModel {
        let state = Arc::new(Mutex::new(ModelState {
            answer: "A photo description of {id}, with the light falling from the left.".into(),
            ..ModelState::default()
        }));
        let shared = web::Data::new(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::JsonConfig::default().limit(64 << 20))
                .route("/api/chat", web::post().to(ollama_chat))
                .route("/v1/chat/completions", web::post().to(openai_chat))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        FakeModel {
            url: format!("http://127.0.0.1:{port}"),
            state,
            server: handle,
        }
    }

    pub fn set(&self, f: impl FnOnce(&mut ModelState)) {
        f(&mut self.state.lock().unwrap());
    }

    pub fn calls(&self, media: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(media)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_calls(&self) -> usize {
        self.state.lock().unwrap().calls.values().sum()
    }

    /// The environment that points an app at this model.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CAPTION_BASE_URL".into(), self.url.clone()),
            ("CAPTION_MODEL".into(), "llava:13b".into()),
        ]
    }
}

/// What the model was sent: the media id drawn on the image, its size and its format.
#[derive(Clone, Debug)]
pub struct Seen {
    pub media: String,
    pub width: u32,
    pub height: u32,
    pub format: String,
    pub bytes: usize,
}

fn look_at(image_b64: &str) -> Option<Seen> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(image_b64)
        .ok()?;
    let format = image::guess_format(&bytes).ok()?;
    let image = image::load_from_memory(&bytes).ok()?;
    Some(Seen {
        media: crate::fakes::pixels::read(&image).unwrap_or_default(),
        width: image.width(),
        height: image.height(),
        format: format!("{format:?}"),
        bytes: bytes.len(),
    })
}

async fn respond(
    state: &Arc<Mutex<ModelState>>,
    body: &Value,
    image: Option<String>,
) -> Result<String, HttpResponse> {
    let seen = image.as_deref().and_then(look_at);
    let media = seen.as_ref().map(|s| s.media.clone()).unwrap_or_default();
    let (hold, delay) = {
        let mut s = state.lock().unwrap();
        s.requests.push(body.clone());
        s.seen.extend(seen);
        *s.calls.entry(media.clone()).or_default() += 1;
        s.times.push((media.clone(), Instant::now()));
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
        (s.hold.clone(), s.delay)
    };
    let mut guard = Answering {
        state: state.clone(),
        answered: false,
    };
    if let Some(hold) = hold {
        hold.acquire().await.unwrap().forget();
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let result = {
        let mut s = state.lock().unwrap();
        if image.is_none() {
            Err(HttpResponse::BadRequest().json(json!({"error": "no image in the request"})))
        } else if let Some((status, message)) = &s.fail_with {
            Err(
                HttpResponse::build(actix_web::http::StatusCode::from_u16(*status).unwrap())
                    .json(json!({"error": message})),
            )
        } else if s.fail_first > 0 {
            s.fail_first -= 1;
            Err(HttpResponse::InternalServerError()
                .json(json!({"error": "llama runner process has terminated: signal: killed"})))
        } else if s.fail_media.contains(&media) {
            Err(HttpResponse::InternalServerError()
                .json(json!({"error": "llama runner process has terminated: exit status 2"})))
        } else {
            Ok(s.answer.replace("{id}", &media))
        }
    };
    guard.answered = true;
    result
}

fn note_authorization(state: &Arc<Mutex<ModelState>>, req: &actix_web::HttpRequest) {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state.lock().unwrap().authorization.push(auth);
}

async fn ollama_chat(
    state: web::Data<Arc<Mutex<ModelState>>>,
    req: actix_web::HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    note_authorization(&state, &req);
    let image = body
        .pointer("/messages/0/images/0")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match respond(&state, &body, image).await {
        Ok(text) => HttpResponse::Ok().json(json!({
            "model": body.get("model"), "created_at": "2026-11-29T10:00:00Z",
            "message": {"role": "assistant", "content": text},
            "done_reason": "stop", "done": true, "total_duration": 1, "eval_count": 12
        })),
        Err(response) => response,
    }
}

async fn openai_chat(
    state: web::Data<Arc<Mutex<ModelState>>>,
    req: actix_web::HttpRequest,
    body: web::Json<Value>,
) -> HttpResponse {
    note_authorization(&state, &req);
    let image = body
        .pointer("/messages/0/content/1/image_url/url")
        .and_then(Value::as_str)
        .and_then(|u| u.split_once("base64,").map(|(_, b)| b.to_owned()));
    match respond(&state, &body, image).await {
        Ok(text) => HttpResponse::Ok().json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
        })),
        Err(response) => response,
    }
}
