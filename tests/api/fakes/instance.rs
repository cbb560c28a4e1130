//! A fake Mastodon or Pixelfed instance speaking the Mastodon client API: /api/v1/instance,
//! /api/v2/instance, verify_credentials, app registration, the OAuth authorize and token
//! endpoints, with the real shapes of their answers and errors.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Mastodon,
    Pixelfed,
    /// A plain web server: HTML for everything.
    NotMastodon,
}

#[derive(Clone, Debug)]
pub struct FakeAccount {
    pub id: String,
    pub username: String,
    pub display_name: String,
}

#[derive(Default)]
pub struct FakeState {
    pub description_limit: Option<i64>,
    pub accounts: HashMap<String, FakeAccount>,
    /// client_id → (secret, redirect_uri, scopes)
    pub apps: HashMap<String, (String, String, String)>,
    /// code → (token, client_id, redirect_uri)
    pub codes: HashMap<String, (String, String, String)>,
    /// The token the authorize page grants.
    pub grant_token: Option<String>,
    pub deny: bool,
    pub token_endpoint_fails: bool,
    pub give_refresh_token: bool,
    /// Every /api/v1/instance request is redirected here when set.
    pub redirect_instance_to: Option<String>,
    pub registered_scopes: Vec<String>,
    /// When set, verify_credentials waits for a permit here before it answers (a slow instance
    /// that a test releases when it is ready).
    pub hold_verify: Option<Arc<tokio::sync::Semaphore>>,
    /// verify_credentials calls that have arrived.
    pub verify_calls: usize,
    /// /oauth/token calls that have arrived.
    pub token_calls: usize,
    /// Overrides the account fields verify_credentials sends (display_name, acct).
    pub account_override: Option<(String, String)>,
    /// The account's posts, newest first (every account on the instance shares them).
    pub posts: Vec<FakePost>,
    /// The query string of every statuses request, in order.
    pub statuses_queries: Vec<String>,
    /// Posts per page when the request asks for more (Mastodon's limit is 40).
    pub page_size: usize,
    /// Answer the next statuses requests with 429 (Retry-After this many seconds), this often.
    pub rate_limit: Option<(u64, usize)>,
    /// Send `X-RateLimit-Remaining: 0` with a reset this many seconds ahead on statuses answers.
    pub exhaust_rate_limit: Option<u64>,
    /// Ignore exclude_reblogs (not every instance honours it).
    pub ignore_exclude_reblogs: bool,
    /// Ignore max_id: every request gets the first page again.
    pub ignore_max_id: bool,
    /// Serve each page oldest first.
    pub ascending_pages: bool,
    /// Answer these statuses requests (counted from 1) with an empty page that links on.
    pub empty_pages: Vec<usize>,
    /// The host the Link header names instead of the one asked (a proxy that rewrites it).
    pub link_host: Option<String>,
    /// Image downloads per media id.
    pub image_calls: HashMap<String, usize>,
    /// When the statuses and image requests arrived.
    pub request_times: Vec<(String, std::time::Instant)>,
    /// Files served instead of the usual PNG, by media id: the bytes and the Content-Type sent.
    pub media_files: HashMap<String, (Vec<u8>, String)>,
    /// Every call on one post or medium (statuses/:id, its source, media/:id), "GET /api/..."
    pub post_calls: Vec<String>,
    /// Edits that changed a post (Mastodon) or a medium (Pixelfed), in order.
    pub edits: usize,
    /// The next calls on a post or medium answer these statuses instead (429 with Retry-After 1).
    pub fail_post_calls: std::collections::VecDeque<u16>,
    /// The next edits are made and then answered with a 500, as if the answer was lost.
    pub edit_then_fail: usize,
    /// Edits wait for a permit here (a test holds one in flight).
    pub hold_edits: Option<Arc<tokio::sync::Semaphore>>,
    /// Mastodon's rate limit on post calls: (requests left, seconds to the reset); 429 at 0.
    pub post_rate_limit: Option<(i64, u64)>,
    /// Calls refused with a 429 by that limit.
    pub rate_limited: usize,
    /// GET /api/v1/statuses/:id/source answers without its `text` field.
    pub source_without_text: bool,
    /// Open user streams: the account id each was opened for, and where its events go.
    pub streams: Vec<(String, tokio::sync::mpsc::UnboundedSender<web::Bytes>)>,
    /// Streams opened (a reconnect is another).
    pub stream_opens: usize,
    /// The next stream requests answer with this status instead (a 429 with Retry-After 1).
    pub stream_refusals: std::collections::VecDeque<u16>,
    /// The heartbeat comment's interval on open streams.
    pub heartbeat: std::time::Duration,
    /// Whether this instance streams at all (Pixelfed does not).
    pub streaming: bool,
    /// Where the API's address lives for the stream (set by `start`): the v2 instance names it.
    pub streaming_url: Option<String>,
    /// The API's own address (media links in streamed posts point there).
    pub api_base: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FakeMedia {
    pub id: String,
    pub kind: &'static str,
    pub description: Option<String>,
    pub focus: Option<(f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FakePost {
    pub id: u64,
    pub content: String,
    /// The text as its author wrote it (GET /api/v1/statuses/:id/source).
    pub source: String,
    pub spoiler_text: String,
    pub sensitive: bool,
    pub language: Option<String>,
    pub reblog: bool,
    pub reply: bool,
    pub media: Vec<FakeMedia>,
    /// RFC 3339; posts made before a test began default to an old date.
    pub created_at: String,
    /// The author's account id; None: the account asking (or streamed to).
    pub author: Option<String>,
}

impl FakePost {
    /// A post with one undescribed image per media id given.
    pub fn images(id: u64, media: &[&str]) -> FakePost {
        FakePost {
            id,
            content: format!("<p>Post {id} &amp; friends</p>"),
            source: format!("Post {id} & friends"),
            spoiler_text: String::new(),
            sensitive: false,
            language: Some("en".into()),
            reblog: false,
            reply: false,
            created_at: "2026-11-01T10:00:00.000Z".into(),
            author: None,
            media: media
                .iter()
                .map(|m| FakeMedia {
                    id: (*m).to_owned(),
                    kind: "image",
                    description: None,
                    focus: None,
                })
                .collect(),
        }
    }

    pub fn with_media(
        mut self,
        id: &str,
        kind: &'static str,
        description: Option<&str>,
    ) -> FakePost {
        self.media.push(FakeMedia {
            id: id.to_owned(),
            kind,
            description: description.map(str::to_owned),
            focus: None,
        });
        self
    }
}

/// The bytes the fake serves for a media id's image (a PNG the model fake reads the id back from),
/// unless the test gave that id a file of its own.
pub fn image_bytes(media_id: &str) -> Vec<u8> {
    crate::fakes::pixels::png(media_id)
}

pub struct FakeInstance {
    pub url: String,
    pub host: String,
    pub port: u16,
    pub flavor: Flavor,
    pub state: Arc<Mutex<FakeState>>,
    server: actix_web::dev::ServerHandle,
    streaming: Option<actix_web::dev::ServerHandle>,
}

impl Drop for FakeInstance {
    fn drop(&mut self) {
        let handle = self.server.clone();
        let streaming = self.streaming.clone();
        tokio::spawn(async move {
            handle.stop(false).await;
            if let Some(streaming) = streaming {
                streaming.stop(false).await;
            }
        });
    }
}

impl FakeInstance {
    pub async fn start(flavor: Flavor) -> FakeInstance {
        Self::start_on("127.0.0.1", flavor).await
    }

    pub async fn start_on(ip: &str, flavor: Flavor) -> FakeInstance {
        let state = Arc::new(Mutex::new(FakeState {
            description_limit: if flavor == Flavor::Mastodon {
                Some(1500)
            } else {
                None
            },
            page_size: 40,
            heartbeat: std::time::Duration::from_secs(15),
            streaming: flavor == Flavor::Mastodon,
            ..FakeState::default()
        }));
        let shared = web::Data::new(Shared {
            flavor,
            state: state.clone(),
        });
        let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route("/api/v1/instance", web::get().to(instance_v1))
                .route("/api/v2/instance", web::get().to(instance_v2))
                .route(
                    "/api/v1/accounts/verify_credentials",
                    web::get().to(verify_credentials),
                )
                .route("/api/v1/apps", web::post().to(register_app))
                .route("/api/v1/accounts/{id}/statuses", web::get().to(statuses))
                .route("/media/{file}", web::get().to(media_file))
                .route("/api/v1/statuses/{id}", web::get().to(get_status))
                .route("/api/v1/statuses/{id}", web::put().to(edit_status))
                .route("/api/v1/statuses/{id}/source", web::get().to(status_source))
                .route("/api/v1/media/{id}", web::put().to(update_media))
                .route("/oauth/authorize", web::get().to(authorize))
                .route("/oauth/token", web::post().to(token))
                .default_service(web::to(fallback))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        // Mastodon's streaming API on a host of its own, as large instances run it.
        let streaming = if flavor == Flavor::Mastodon {
            let shared = web::Data::new(Shared {
                flavor,
                state: state.clone(),
            });
            let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
            let stream_port = listener.local_addr().unwrap().port();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(shared.clone())
                    .route("/api/v1/streaming/user", web::get().to(user_stream))
                    .default_service(web::to(fallback))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            let stream_handle = server.handle();
            tokio::spawn(server);
            state.lock().unwrap().streaming_url = Some(format!("ws://{ip}:{stream_port}"));
            Some(stream_handle)
        } else {
            None
        };
        state.lock().unwrap().api_base = format!("http://{ip}:{port}");
        FakeInstance {
            url: format!("http://{ip}:{port}"),
            host: format!("{ip}:{port}"),
            port,
            flavor,
            state,
            server: handle,
            streaming,
        }
    }

    /// A valid token for a new account on this instance.
    pub fn add_account(&self, token: &str, username: &str) -> FakeAccount {
        let account = FakeAccount {
            id: format!("1090{}", self.state.lock().unwrap().accounts.len() + 1),
            username: username.to_owned(),
            display_name: format!("{username} (display)"),
        };
        self.state
            .lock()
            .unwrap()
            .accounts
            .insert(token.to_owned(), account.clone());
        account
    }

    pub fn set(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.state.lock().unwrap());
    }

    /// The person posts: the post goes on top of the timeline, and every open stream gets its
    /// `update` event.
    pub fn publish_post(&self, post: FakePost) {
        let mut state = self.state.lock().unwrap();
        state.posts.insert(0, post.clone());
        state.posts.sort_by_key(|p| std::cmp::Reverse(p.id));
        broadcast_post(&mut state, "update", &post);
    }

    /// The person edits a post on the instance: the timeline has the new version, and every
    /// open stream gets a `status.update` event.
    pub fn publish_post_as_edit(&self, post: FakePost) {
        let mut state = self.state.lock().unwrap();
        state.posts.retain(|p| p.id != post.id);
        state.posts.insert(0, post.clone());
        state.posts.sort_by_key(|p| std::cmp::Reverse(p.id));
        broadcast_post(&mut state, "status.update", &post);
    }

    /// A post made while nobody listens (no stream event): the timeline alone has it.
    pub fn add_post_quietly(&self, post: FakePost) {
        let mut state = self.state.lock().unwrap();
        state.posts.insert(0, post);
        state.posts.sort_by_key(|p| std::cmp::Reverse(p.id));
    }

    /// The person deletes a post: gone from the timeline, and a `delete` event.
    pub fn delete_post(&self, id: u64) {
        let mut state = self.state.lock().unwrap();
        state.posts.retain(|p| p.id != id);
        let event = web::Bytes::from(format!("event: delete\ndata: {id}\n\n"));
        state
            .streams
            .retain(|(_, tx)| tx.send(event.clone()).is_ok());
    }

    /// Sends raw bytes down every open stream (a broken or hostile streaming server).
    pub fn send_raw(&self, bytes: Vec<u8>) {
        let mut state = self.state.lock().unwrap();
        let bytes = web::Bytes::from(bytes);
        state
            .streams
            .retain(|(_, tx)| tx.send(bytes.clone()).is_ok());
    }

    /// Ends every open stream (the streaming server restarted, a proxy cut it).
    pub fn drop_streams(&self) {
        self.state.lock().unwrap().streams.clear();
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        let mut state = self.state.lock().unwrap();
        state.streams.retain(|(_, tx)| !tx.is_closed());
        state.streams.len()
    }
}

struct Shared {
    flavor: Flavor,
    state: Arc<Mutex<FakeState>>,
}

fn html() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html")
        .body("<!doctype html><title>Welcome</title><h1>My blog</h1>")
}

async fn fallback(shared: web::Data<Shared>) -> HttpResponse {
    match shared.flavor {
        Flavor::NotMastodon => html(),
        _ => HttpResponse::NotFound().json(json!({"error": "Record not found"})),
    }
}

async fn instance_v1(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    if let Some(target) = shared.state.lock().unwrap().redirect_instance_to.clone() {
        return HttpResponse::Found()
            .insert_header(("Location", target))
            .finish();
    }
    let host = req.connection_info().host().to_owned();
    match shared.flavor {
        Flavor::Mastodon => HttpResponse::Ok().json(json!({
            "uri": host, "title": "Fake Mastodon", "version": "4.3.2", "short_description": "",
            "stats": {"user_count": 1, "status_count": 1, "domain_count": 1}
        })),
        Flavor::Pixelfed => HttpResponse::Ok().json(json!({
            "uri": host, "title": "pixelfed", "version": "3.5.3 (compatible; Pixelfed 0.12.4)",
            "stats": {"user_count": 1}
        })),
        Flavor::NotMastodon => html(),
    }
}

async fn instance_v2(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let host = req.connection_info().host().to_owned();
    let (limit, streaming) = {
        let state = shared.state.lock().unwrap();
        (state.description_limit, state.streaming_url.clone())
    };
    match (shared.flavor, limit) {
        (Flavor::Mastodon, Some(limit)) => HttpResponse::Ok().json(json!({
            "domain": host, "title": "Fake Mastodon", "version": "4.3.2",
            "configuration": {
                "urls": {"streaming": streaming},
                "statuses": {"max_characters": 500, "max_media_attachments": 4},
                "media_attachments": {"description_limit": limit, "image_size_limit": 16777216}
            }
        })),
        (Flavor::NotMastodon, _) => html(),
        _ => HttpResponse::NotFound().json(json!({"error": "Record not found"})),
    }
}

fn bearer(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

async fn verify_credentials(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    if shared.flavor == Flavor::NotMastodon {
        return html();
    }
    let hold = {
        let mut state = shared.state.lock().unwrap();
        state.verify_calls += 1;
        state.hold_verify.clone()
    };
    if let Some(hold) = hold {
        hold.acquire().await.unwrap().forget();
    }
    let (account, over) = {
        let state = shared.state.lock().unwrap();
        let account = bearer(&req).and_then(|t| state.accounts.get(&t).cloned());
        (account, state.account_override.clone())
    };
    match account {
        Some(a) => HttpResponse::Ok().json(json!({
            "id": a.id, "username": a.username,
            "acct": over.as_ref().map(|o| o.1.clone()).unwrap_or(a.username.clone()),
            "display_name": over.as_ref().map(|o| o.0.clone()).unwrap_or(a.display_name.clone()),
            "locked": false, "bot": false, "note": "", "url": "https://example/@x", "avatar": "", "followers_count": 0
        })),
        None => HttpResponse::Unauthorized().json(json!({"error": "The access token is invalid"})),
    }
}

#[derive(Deserialize)]
struct AppForm {
    client_name: String,
    redirect_uris: String,
    #[serde(default)]
    scopes: String,
    #[serde(default)]
    website: String,
}

async fn register_app(shared: web::Data<Shared>, form: web::Form<AppForm>) -> HttpResponse {
    let allowed: &[&str] = match shared.flavor {
        Flavor::Mastodon => &[
            "read",
            "write",
            "read:accounts",
            "read:statuses",
            "write:statuses",
            "write:media",
        ],
        Flavor::Pixelfed => &["read", "write", "follow", "push"],
        Flavor::NotMastodon => return html(),
    };
    if form.scopes.split(' ').any(|s| !allowed.contains(&s)) {
        return HttpResponse::UnprocessableEntity()
            .json(json!({"error": "Validation failed: Scopes are invalid"}));
    }
    let mut state = shared.state.lock().unwrap();
    let client_id = format!("client-{}", state.apps.len() + 1);
    let secret = format!("secret-{}", rand::random::<u32>());
    state.registered_scopes.push(form.scopes.clone());
    state.apps.insert(
        client_id.clone(),
        (
            secret.clone(),
            form.redirect_uris.clone(),
            form.scopes.clone(),
        ),
    );
    HttpResponse::Ok().json(json!({
        "id": "1", "name": form.client_name, "website": form.website, "redirect_uri": form.redirect_uris,
        "client_id": client_id, "client_secret": secret, "vapid_key": "x"
    }))
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    response_type: String,
    scope: String,
    state: Option<String>,
}

/// Stands in for the person approving (or denying) on the instance.
async fn authorize(shared: web::Data<Shared>, query: web::Query<AuthorizeQuery>) -> HttpResponse {
    let mut state = shared.state.lock().unwrap();
    let Some((_, redirect, scopes)) = state.apps.get(&query.client_id).cloned() else {
        return HttpResponse::BadRequest().body("unknown client");
    };
    if redirect != query.redirect_uri || query.response_type != "code" || scopes != query.scope {
        return HttpResponse::BadRequest().body("The redirect uri included is not valid.");
    }
    let sep = if redirect.contains('?') { '&' } else { '?' };
    let st = query.state.clone().unwrap_or_default();
    if state.deny {
        return HttpResponse::Found()
            .insert_header((
                "Location",
                format!("{redirect}{sep}error=access_denied&error_description=denied&state={st}"),
            ))
            .finish();
    }
    let token = state.grant_token.clone().unwrap_or_default();
    let code = format!("code-{}", rand::random::<u32>());
    state.codes.insert(
        code.clone(),
        (token, query.client_id.clone(), redirect.clone()),
    );
    HttpResponse::Found()
        .insert_header(("Location", format!("{redirect}{sep}code={code}&state={st}")))
        .finish()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
}

async fn token(shared: web::Data<Shared>, form: web::Form<TokenForm>) -> HttpResponse {
    let mut state = shared.state.lock().unwrap();
    state.token_calls += 1;
    if state.token_endpoint_fails {
        return HttpResponse::InternalServerError()
            .body("<h1>We're sorry, but something went wrong</h1>");
    }
    let app_ok = state
        .apps
        .get(&form.client_id)
        .is_some_and(|(secret, redirect, _)| {
            *secret == form.client_secret && *redirect == form.redirect_uri
        });
    let grant = state.codes.remove(&form.code);
    match grant {
        Some((token, client, _)) if app_ok && client == form.client_id && form.grant_type == "authorization_code" => {
            let mut body = json!({"access_token": token, "token_type": "Bearer", "scope": "read write", "created_at": 1});
            if state.give_refresh_token {
                body["refresh_token"] = json!(format!("refresh-{token}"));
            }
            HttpResponse::Ok().json(body)
        }
        _ => HttpResponse::BadRequest().json(json!({
            "error": "invalid_grant",
            "error_description": "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client."
        })),
    }
}

#[derive(Deserialize)]
struct StatusesQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    max_id: Option<u64>,
    #[serde(default)]
    since_id: Option<u64>,
    #[serde(default)]
    only_media: Option<bool>,
    #[serde(default)]
    exclude_reblogs: Option<bool>,
}

fn post_json(base: &str, username: &str, post: &FakePost) -> serde_json::Value {
    post_json_as(base, username, "", post)
}

/// A post as the API serves it, its author `account_id` unless the post names another.
fn post_json_as(
    base: &str,
    username: &str,
    account_id: &str,
    post: &FakePost,
) -> serde_json::Value {
    let media: Vec<serde_json::Value> = post
        .media
        .iter()
        .map(|m| {
            json!({
                "id": m.id, "type": m.kind,
                "url": format!("{base}/media/{}.png", m.id),
                "preview_url": format!("{base}/media/{}_small.png", m.id),
                "remote_url": null, "preview_remote_url": null, "text_url": null,
                "meta": match m.focus {
                    Some((x, y)) => json!({"original": {"width": 640, "height": 480}, "focus": {"x": x, "y": y}}),
                    None => json!({"original": {"width": 640, "height": 480}}),
                },
                "description": m.description, "blurhash": "UFGb?V00~q%M"
            })
        })
        .collect();
    let author = post.author.clone().unwrap_or_else(|| account_id.to_owned());
    let url = format!("{base}/@{username}/{}", post.id);
    let status = json!({
        "id": post.id.to_string(), "created_at": post.created_at,
        "account": {"id": author, "username": username, "acct": username},
        "in_reply_to_id": if post.reply { json!("1") } else { json!(null) },
        "in_reply_to_account_id": null, "sensitive": post.sensitive, "spoiler_text": post.spoiler_text,
        "visibility": "public", "language": post.language, "uri": url.clone(), "url": url,
        "replies_count": 0, "reblogs_count": 0, "favourites_count": 0,
        "content": post.content, "reblog": null, "media_attachments": media,
        "mentions": [], "tags": [], "emojis": [], "card": null, "poll": null
    });
    if post.reblog {
        let mut outer = json!({
            "id": post.id.to_string(), "created_at": "2026-11-01T10:00:00.000Z",
            "in_reply_to_id": null, "sensitive": false, "spoiler_text": "",
            "visibility": "public", "language": null, "uri": format!("{base}/reblog/{}", post.id),
            "url": null, "content": "", "media_attachments": [], "mentions": [], "tags": []
        });
        outer["reblog"] = status;
        return outer;
    }
    status
}

/// GET /api/v1/accounts/:id/statuses, newest first, paged by max_id, with Mastodon's Link header
/// (Pixelfed sends none).
async fn statuses(
    shared: web::Data<Shared>,
    req: HttpRequest,
    query: web::Query<StatusesQuery>,
) -> HttpResponse {
    let base = format!("http://{}", req.connection_info().host());
    let mut state = shared.state.lock().unwrap();
    state.statuses_queries.push(req.query_string().to_owned());
    state
        .request_times
        .push(("statuses".into(), std::time::Instant::now()));
    let Some(account) = bearer(&req).and_then(|t| state.accounts.get(&t).cloned()) else {
        return HttpResponse::Unauthorized().json(json!({"error": "The access token is invalid"}));
    };
    if let Some((seconds, times)) = state.rate_limit {
        if times > 0 {
            state.rate_limit = (times > 1).then_some((seconds, times - 1));
            let reset = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds as i64);
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", seconds.to_string()))
                .insert_header(("X-RateLimit-Limit", "300"))
                .insert_header(("X-RateLimit-Remaining", "0"))
                .insert_header((
                    "X-RateLimit-Reset",
                    reset
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap(),
                ))
                .json(json!({"error": "Too many requests"}));
        }
    }
    let request_number = state.statuses_queries.len();
    if state.empty_pages.contains(&request_number) {
        let path = req.path();
        let max_id = query
            .max_id
            .map(|m| format!("&max_id={m}"))
            .unwrap_or_default();
        return HttpResponse::Ok()
            .insert_header((
                "Link",
                format!("<{base}{path}?limit=40{max_id}&only_media=true&hop={request_number}>; rel=\"next\""),
            ))
            .json(Vec::<serde_json::Value>::new());
    }
    let limit = query.limit.unwrap_or(20).min(40).min(state.page_size);
    let exclude_reblogs = query.exclude_reblogs.unwrap_or(false) && !state.ignore_exclude_reblogs;
    let only_media = query.only_media.unwrap_or(false);
    let page: Vec<FakePost> = state
        .posts
        .iter()
        .filter(|p| state.ignore_max_id || query.max_id.is_none_or(|max| p.id < max))
        .filter(|p| query.since_id.is_none_or(|since| p.id > since))
        .filter(|p| !(exclude_reblogs && p.reblog))
        .filter(|p| !only_media || !p.media.is_empty())
        .take(limit)
        .cloned()
        .collect();
    let mut body: Vec<serde_json::Value> = page
        .iter()
        .map(|p| post_json_as(&base, &account.username, &account.id, p))
        .collect();
    if state.ascending_pages {
        body.reverse();
    }
    let mut response = HttpResponse::Ok();
    if let Some(reset_in) = state.exhaust_rate_limit {
        let reset = time::OffsetDateTime::now_utc() + time::Duration::seconds(reset_in as i64);
        response
            .insert_header(("X-RateLimit-Limit", "300"))
            .insert_header(("X-RateLimit-Remaining", "0"))
            .insert_header((
                "X-RateLimit-Reset",
                reset
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap(),
            ));
    }
    if shared.flavor == Flavor::Mastodon {
        if let (Some(first), Some(last)) = (page.first(), page.last()) {
            let path = req.path();
            let base = match &state.link_host {
                Some(host) => format!("http://{host}"),
                None => base.clone(),
            };
            response.insert_header((
                "Link",
                format!(
                    "<{base}{path}?limit={limit}&max_id={}&only_media={only_media}&exclude_reblogs={}>; rel=\"next\", \
                     <{base}{path}?limit={limit}&min_id={}&only_media={only_media}>; rel=\"prev\"",
                    last.id,
                    query.exclude_reblogs.unwrap_or(false),
                    first.id
                ),
            ));
        }
    }
    response.json(body)
}

/// The images (originals and previews) the posts point at.
async fn media_file(shared: web::Data<Shared>, path: web::Path<String>) -> HttpResponse {
    let file = path.into_inner();
    let id = file
        .trim_end_matches(".png")
        .trim_end_matches("_small")
        .to_owned();
    let mut state = shared.state.lock().unwrap();
    if !file.contains("_small") {
        *state.image_calls.entry(id.clone()).or_default() += 1;
        state
            .request_times
            .push((format!("image:{id}"), std::time::Instant::now()));
    }
    if let Some((bytes, content_type)) = state.media_files.get(&id) {
        return HttpResponse::Ok()
            .content_type(content_type.as_str())
            .body(bytes.clone());
    }
    HttpResponse::Ok()
        .content_type("image/png")
        .body(image_bytes(&id))
}

/// The checks every call on a post or medium goes through, in Mastodon's order: the token, the
/// rate limit, then any failure the test asked for. Err is the answer to give.
type Headers = Vec<(&'static str, String)>;

fn post_call(
    state: &mut FakeState,
    req: &HttpRequest,
) -> Result<(FakeAccount, Headers), Box<HttpResponse>> {
    state
        .post_calls
        .push(format!("{} {}", req.method(), req.path()));
    let Some(account) = bearer(req).and_then(|t| state.accounts.get(&t).cloned()) else {
        return Err(Box::new(
            HttpResponse::Unauthorized().json(json!({"error": "The access token is invalid"})),
        ));
    };
    let mut headers = Vec::new();
    if let Some((left, reset_in)) = state.post_rate_limit {
        let reset = time::OffsetDateTime::now_utc() + time::Duration::seconds(reset_in as i64);
        let reset = reset
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        if left <= 0 {
            return Err(Box::new(
                HttpResponse::TooManyRequests()
                    .insert_header(("X-RateLimit-Limit", "300"))
                    .insert_header(("X-RateLimit-Remaining", "0"))
                    .insert_header(("X-RateLimit-Reset", reset))
                    .json(json!({"error": "Too many requests"})),
            ));
        }
        state.post_rate_limit = Some((left - 1, reset_in));
        headers.push(("X-RateLimit-Limit", "300".to_owned()));
        headers.push(("X-RateLimit-Remaining", (left - 1).to_string()));
        headers.push(("X-RateLimit-Reset", reset));
    }
    if let Some(status) = state.fail_post_calls.pop_front() {
        let mut response =
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
        if status == 429 {
            response.insert_header(("Retry-After", "1"));
        }
        return Err(Box::new(
            response.json(json!({"error": format!("Fake failure {status}")})),
        ));
    }
    Ok((account, headers))
}

fn with_headers(
    mut response: actix_web::HttpResponseBuilder,
    headers: Vec<(&'static str, String)>,
) -> actix_web::HttpResponseBuilder {
    for header in headers {
        response.insert_header(header);
    }
    response
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "Record not found"}))
}

/// GET /api/v1/statuses/:id
async fn get_status(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let base = format!("http://{}", req.connection_info().host());
    let mut state = shared.state.lock().unwrap();
    let (account, headers) = match post_call(&mut state, &req) {
        Ok(ok) => ok,
        Err(response) => return *response,
    };
    match state.posts.iter().find(|p| p.id.to_string() == *path) {
        Some(post) => with_headers(HttpResponse::Ok(), headers).json(post_json(
            &base,
            &account.username,
            post,
        )),
        None => not_found(),
    }
}

/// GET /api/v1/statuses/:id/source (Mastodon only).
async fn status_source(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if shared.flavor != Flavor::Mastodon {
        return not_found();
    }
    let mut state = shared.state.lock().unwrap();
    let headers = match post_call(&mut state, &req) {
        Ok((_, headers)) => headers,
        Err(response) => return *response,
    };
    match state.posts.iter().find(|p| p.id.to_string() == *path) {
        Some(_) if state.source_without_text => with_headers(HttpResponse::Ok(), headers)
            .json(json!({"id": path.as_str(), "spoiler_text": ""})),
        Some(post) => with_headers(HttpResponse::Ok(), headers).json(json!({
            "id": post.id.to_string(), "text": post.source, "spoiler_text": post.spoiler_text
        })),
        None => not_found(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn too_long(limit: usize) -> HttpResponse {
    HttpResponse::UnprocessableEntity().json(json!({
        "error": format!("Validation failed: Description is too long (maximum is {limit} characters)")
    }))
}

/// PUT /api/v1/statuses/:id, as Mastodon's UpdateStatusService does it: the text replaced; a
/// missing spoiler_text clears the content warning; media_ids missing removes every attachment;
/// media_attributes[] change each attachment's description and focus (a description over the
/// limit is a 422, and nothing changes); language and sensitive kept when not sent.
async fn edit_status(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    if shared.flavor != Flavor::Mastodon {
        return not_found();
    }
    let (hold, headers) = {
        let mut state = shared.state.lock().unwrap();
        let headers = match post_call(&mut state, &req) {
            Ok((_, headers)) => headers,
            Err(response) => return *response,
        };
        (state.hold_edits.clone(), headers)
    };
    if let Some(hold) = hold {
        hold.acquire().await.unwrap().forget();
    }
    let mut state = shared.state.lock().unwrap();
    let limit = state.description_limit.unwrap_or(1500) as usize;
    let Some(index) = state.posts.iter().position(|p| p.id.to_string() == *path) else {
        return not_found();
    };
    let mut post = state.posts[index].clone();
    let body = body.into_inner();
    if body.get("poll").is_some() && !post.media.is_empty() {
        return HttpResponse::UnprocessableEntity().json(
            json!({"error": "Validation failed: Media can't be attached to a post with a poll"}),
        );
    }
    post.source = body["status"].as_str().unwrap_or("").to_owned();
    post.content = format!("<p>{}</p>", escape(&post.source));
    post.spoiler_text = body["spoiler_text"].as_str().unwrap_or("").to_owned();
    if body.get("sensitive").is_some() || body.get("spoiler_text").is_some() {
        post.sensitive =
            body["sensitive"].as_bool().unwrap_or(false) || !post.spoiler_text.is_empty();
    }
    if let Some(language) = body["language"].as_str() {
        post.language = Some(language.to_owned());
    }
    let ids: Vec<String> = body["media_ids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut media = Vec::new();
    for id in &ids {
        match post.media.iter().find(|m| &m.id == id) {
            Some(m) => media.push(m.clone()),
            None => {
                return HttpResponse::UnprocessableEntity()
                    .json(json!({"error": "Validation failed: Media attachments are invalid"}))
            }
        }
    }
    for attribute in body["media_attributes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let Some(m) = media
            .iter_mut()
            .find(|m| Some(m.id.as_str()) == attribute["id"].as_str())
        else {
            continue;
        };
        if let Some(description) = attribute["description"].as_str() {
            if description.chars().count() > limit {
                return too_long(limit);
            }
            m.description = Some(description.to_owned());
        }
        if let Some(focus) = attribute["focus"].as_str() {
            let parts: Vec<f64> = focus
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            if let [x, y] = parts[..] {
                m.focus = Some((x, y));
            }
        }
    }
    post.media = media;
    state.posts[index] = post.clone();
    state.edits += 1;
    broadcast_post(&mut state, "status.update", &post);
    if state.edit_then_fail > 0 {
        state.edit_then_fail -= 1;
        return HttpResponse::InternalServerError()
            .json(json!({"error": "We're sorry, but something went wrong"}));
    }
    let base = format!("http://{}", req.connection_info().host());
    let username = state
        .accounts
        .values()
        .next()
        .map(|a| a.username.clone())
        .unwrap_or_default();
    with_headers(HttpResponse::Ok(), headers).json(post_json(&base, &username, &post))
}

#[derive(Deserialize)]
struct MediaForm {
    description: Option<String>,
}

/// PUT /api/v1/media/:id: Mastodon refuses it once the medium is attached to a post (404, as
/// Mastodon answers); Pixelfed changes the description.
async fn update_media(
    shared: web::Data<Shared>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<MediaForm>,
) -> HttpResponse {
    let (hold, headers) = {
        let mut state = shared.state.lock().unwrap();
        let headers = match post_call(&mut state, &req) {
            Ok((_, headers)) => headers,
            Err(response) => return *response,
        };
        (state.hold_edits.clone(), headers)
    };
    if let Some(hold) = hold {
        hold.acquire().await.unwrap().forget();
    }
    let mut state = shared.state.lock().unwrap();
    let limit = state.description_limit.unwrap_or(1000) as usize;
    let found = state
        .posts
        .iter()
        .position(|p| p.media.iter().any(|m| m.id == *path));
    let Some(index) = found else {
        return not_found();
    };
    if shared.flavor == Flavor::Mastodon {
        return not_found();
    }
    let description = form.description.clone().unwrap_or_default();
    if description.chars().count() > limit {
        return too_long(limit);
    }
    let medium = state.posts[index]
        .media
        .iter_mut()
        .find(|m| m.id == *path)
        .unwrap();
    medium.description = Some(description);
    let answer = json!({"id": medium.id, "type": medium.kind, "description": medium.description});
    state.edits += 1;
    if state.edit_then_fail > 0 {
        state.edit_then_fail -= 1;
        return HttpResponse::InternalServerError().json(json!({"error": "Server error"}));
    }
    with_headers(HttpResponse::Ok(), headers).json(answer)
}

/// Sends a post event to every open stream (each as its account sees it).
fn broadcast_post(state: &mut FakeState, event: &str, post: &FakePost) {
    let base = state.api_base.clone();
    let username = state
        .accounts
        .values()
        .next()
        .map(|a| a.username.clone())
        .unwrap_or_default();
    state.streams.retain(|(account_id, tx)| {
        let json = post_json_as(&base, &username, account_id, post);
        let frame = format!("event: {event}\ndata: {json}\n\n");
        tx.send(web::Bytes::from(frame)).is_ok()
    });
}

/// GET /api/v1/streaming/user on the streaming host: server-sent events with Mastodon's event
/// names and payloads (the payload of update and status.update is the status as JSON text, of
/// delete the id), heartbeat comments between them.
async fn user_stream(shared: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let mut state = shared.state.lock().unwrap();
    if !state.streaming {
        return not_found();
    }
    let Some(account) = bearer(&req).and_then(|t| state.accounts.get(&t).cloned()) else {
        return HttpResponse::Unauthorized().json(json!({"error": "Error: Invalid access token"}));
    };
    if let Some(status) = state.stream_refusals.pop_front() {
        let mut response =
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
        if status == 429 {
            response.insert_header(("Retry-After", "1"));
        }
        return response.json(json!({"error": format!("Fake failure {status}")}));
    }
    state.stream_opens += 1;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<web::Bytes>();
    // Mastodon greets a new stream with a comment.
    let _ = tx.send(web::Bytes::from_static(b":)\n"));
    state.streams.push((account.id.clone(), tx));
    let mut tick = tokio::time::interval(state.heartbeat);
    tick.reset();
    let body = futures_util::stream::unfold((rx, tick), |(mut rx, mut tick)| async move {
        tokio::select! {
            message = rx.recv() => message.map(|bytes| (Ok::<_, actix_web::Error>(bytes), (rx, tick))),
            _ = tick.tick() => Some((Ok(web::Bytes::from_static(b":thump\n")), (rx, tick))),
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .streaming(body)
}
