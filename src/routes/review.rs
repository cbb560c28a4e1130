//! The review queue (GET /review), what a person does with a draft (POST /review/{id}/save,
//! approve, reject, regenerate, retry; POST /review/bulk), the drafts' states for the page's
//! script (GET /review/status) and what was published (GET /history).
//!
//! Every action is a form POST that works without JavaScript (Post/Redirect/Get back to the same
//! page of the queue, with a flash; a refused text re-renders the page with what was typed, so
//! nothing is lost). Sent by static/review.js with `Accept: application/json`, the answer is JSON
//! with the changed drafts' HTML, which the script puts in place.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_flash_messages::{FlashMessage, IncomingFlashMessages};
use serde::{Deserialize, Serialize};

use crate::auth::CurrentUser;
use crate::domain::{DraftId, PlatformId};
use crate::routes::caption::view_or_redirect;
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::services::review::{self, BulkEdit, Refused};
use crate::sessions::TypedSession;
use crate::state::AppState;
use crate::store::drafts::{self, DraftRow};
use crate::web::page::Page;

/// A description limit when the connection's is unknown (Mastodon's default).
const DEFAULT_LIMIT: usize = 1500;

/// The post's text shown beside a draft, in characters.
const POST_TEXT_SHOWN: usize = 300;

/// A draft as the page shows it.
#[derive(Serialize)]
struct DraftView {
    id: i64,
    version: i64,
    state: String,
    state_text: &'static str,
    alt_text: String,
    length: usize,
    edited: bool,
    error: Option<String>,
    /// A refused text's message, shown at the text area.
    problem: Option<String>,
    preview_url: String,
    status_url: String,
    post_text: String,
    language: Option<String>,
    model: String,
    drafted: String,
    published: Option<String>,
    auto_published: bool,
    actions: Vec<&'static str>,
    busy: bool,
}

use crate::web::when;

fn view(d: &DraftRow) -> DraftView {
    let post_text: String = d.post_text.chars().take(POST_TEXT_SHOWN).collect();
    DraftView {
        id: d.id,
        version: d.version,
        state: d.state.clone(),
        state_text: review::state_text(&d.state),
        length: d.alt_text.chars().count(),
        alt_text: d.alt_text.clone(),
        edited: d.edited,
        error: d.error.clone(),
        problem: None,
        preview_url: d.preview_url.clone(),
        status_url: d.status_url.clone(),
        post_text: if post_text.len() < d.post_text.len() {
            format!("{post_text}…")
        } else {
            post_text
        },
        language: d.language.clone(),
        model: d.model.clone(),
        drafted: when(d.created_at),
        published: d.published_at.map(when),
        auto_published: d.auto_published,
        actions: review::actions(&d.state),
        busy: matches!(d.state.as_str(), drafts::APPROVED | drafts::PUBLISHING),
    }
}

/// Which page of the queue a form came from, to go back to.
#[derive(Clone, Debug, Serialize)]
struct Back {
    state: String,
    page: i64,
}

impl Back {
    fn parse(state: Option<&str>, page: Option<&str>) -> Back {
        let state = match state {
            Some(s) if s == "all" || drafts::STATES.contains(&s) => s.to_owned(),
            _ => drafts::PENDING.to_owned(),
        };
        let page = page
            .and_then(|p| p.trim().parse::<i64>().ok())
            .filter(|p| (1..=1_000_000).contains(p))
            .unwrap_or(1);
        Back { state, page }
    }

    fn filter(&self) -> Option<&str> {
        (self.state != "all").then_some(self.state.as_str())
    }

    fn location(&self, draft: Option<i64>) -> String {
        let anchor = draft.map(|id| format!("#draft-{id}")).unwrap_or_default();
        format!("/review?state={}&page={}{anchor}", self.state, self.page)
    }
}

#[derive(Deserialize)]
pub struct QueueQuery {
    state: Option<String>,
    page: Option<String>,
}

fn filter_label(state: &str) -> &'static str {
    match state {
        "all" => "All",
        drafts::PENDING => "To review",
        drafts::APPROVED => "Approved",
        drafts::PUBLISHING => "Publishing",
        drafts::PUBLISHED => "Published",
        drafts::PUBLISH_FAILED => "Publishing failed",
        drafts::REJECTED => "Rejected",
        drafts::GENERATION_FAILED => "Could not be described",
        drafts::ALREADY_DESCRIBED => "Described meanwhile",
        _ => "Other",
    }
}

#[derive(Serialize)]
struct Filter {
    state: &'static str,
    label: &'static str,
    count: i64,
    current: bool,
}

/// The queue page; `refused` puts a person's refused text back in its draft with the message.
async fn render_queue(
    state: &AppState,
    user: &CurrentUser,
    session: &TypedSession,
    back: &Back,
    flashes: Option<&IncomingFlashMessages>,
    refused: Option<(i64, &str, String, StatusCode)>,
) -> Result<HttpResponse, AppError> {
    let view_ = view_or_redirect(state, session, user.uid, false).await?;
    let platform = &view_.current;
    let queue = state
        .review
        .queue(platform.id, back.filter(), back.page)
        .await?;
    let mut filters = vec![Filter {
        state: "all",
        label: filter_label("all"),
        count: queue.counts.iter().map(|(_, n)| n).sum(),
        current: back.state == "all",
    }];
    filters.extend(queue.counts.iter().map(|(s, n)| Filter {
        state: s,
        label: filter_label(s),
        count: *n,
        current: back.state == *s,
    }));
    let mut views: Vec<DraftView> = queue.drafts.iter().map(view).collect();
    if let Some((id, _, _, _)) = &refused {
        // The refused draft is shown with what was typed even when it is not on this page (a run
        // added drafts above it, or it belongs to another account of the person's).
        if !views.iter().any(|v| v.id == *id) {
            if let Some((draft, _)) = state.review.draft(user.uid, DraftId(*id)).await? {
                views.insert(0, view(&draft));
            }
        }
    }
    // The typed text goes back in its box; a draft that has no box now (approved in another
    // tab, say) gets it shown in the summary, to copy.
    let mut typed_without_box = None;
    let status = match &refused {
        Some((id, text, message, status)) => {
            if let Some(v) = views.iter_mut().find(|v| v.id == *id) {
                if v.actions.contains(&"save") {
                    v.alt_text = (*text).to_owned();
                    v.length = text.chars().count();
                    v.problem = Some(message.clone());
                } else {
                    typed_without_box = Some((*text).to_owned());
                }
            }
            *status
        }
        None => StatusCode::OK,
    };
    let back = Back {
        state: back.state.clone(),
        page: queue.page,
    };
    let selectable = views
        .iter()
        .any(|v| v.actions.iter().any(|a| *a == "approve" || *a == "reject"));
    let title = if queue.pages > 1 {
        format!(
            "Review drafts: {}, page {} of {}",
            filter_label(&back.state),
            back.page,
            queue.pages
        )
    } else {
        format!("Review drafts: {}", filter_label(&back.state))
    };
    let refused_id = refused.as_ref().map(|(id, _, _, _)| *id);
    let waiting = state.waiting(user.uid).await;
    // Drafts waiting on the person's other accounts (the navigation counts them all).
    let here = queue
        .counts
        .iter()
        .find(|(s, _)| *s == drafts::PENDING)
        .map_or(0, |(_, n)| *n);
    let elsewhere = waiting.map_or(0, |n| (n - here).max(0));
    let mut page = Page::new(&title, Some(user), flashes)
        .with("waiting", &waiting)
        .with("elsewhere", &elsewhere)
        .with("here", &here)
        .with("selectable", &selectable)
        .with("refused_id", &refused_id)
        .with("account", &platform.handle())
        .with("needs_reauth", &platform.needs_reauth)
        .with("limit", &platform.description_limit)
        .with("filters", &filters)
        .with("filter_label", &filter_label(&back.state))
        .with("drafts", &views)
        .with("total", &queue.total)
        .with("pages", &queue.pages)
        .with("back", &back);
    if let Some((_, _, message, _)) = &refused {
        page = page
            .with("problem", message)
            .with("typed_without_box", &typed_without_box);
    }
    page.render_status(&state.templates, status, "review/index.html")
}

pub async fn queue(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    query: web::Query<QueueQuery>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let back = Back::parse(query.state.as_deref(), query.page.as_deref());
    render_queue(&state, &user, &session, &back, Some(&flashes), None).await
}

#[derive(Deserialize)]
pub struct DraftForm {
    #[serde(default)]
    csrf_token: String,
    alt_text: Option<String>,
    back_state: Option<String>,
    back_page: Option<String>,
}

impl DraftForm {
    fn back(&self) -> Back {
        Back::parse(self.back_state.as_deref(), self.back_page.as_deref())
    }
}

/// The CSRF check: the form's csrf_token, or a script's X-CSRF-Token header.
fn check_csrf(user: &CurrentUser, req: &HttpRequest, form_token: &str) -> Result<(), AppError> {
    if form_token.is_empty() {
        user.check_csrf_header(req)
    } else {
        user.check_csrf(form_token)
    }
}

/// Whether the page's script sent this (it wants JSON back).
fn scripted(req: &HttpRequest) -> bool {
    req.headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// The description limit of one of the person's connections, from the cached platform record
/// (no SQL when warm: the status endpoint is polled while drafts go out).
async fn limit_of(
    state: &AppState,
    user: &CurrentUser,
    platform_id: i64,
) -> Result<usize, AppError> {
    Ok(state
        .platforms
        .get_platform_by_id(PlatformId(platform_id), user.uid)
        .await?
        .and_then(|p| usize::try_from(p.description_limit).ok())
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_LIMIT))
}

/// Drafts' HTML for a script, each with its own connection's limit.
async fn drafts_json(
    state: &AppState,
    user: &CurrentUser,
    rows: &[DraftRow],
    back: &Back,
    refused: impl Fn(i64) -> Option<String>,
) -> Result<Vec<serde_json::Value>, AppError> {
    let mut limits = std::collections::HashMap::new();
    let mut list = Vec::with_capacity(rows.len());
    for row in rows {
        let limit = match limits.get(&row.platform_id) {
            Some(limit) => *limit,
            None => {
                let limit = limit_of(state, user, row.platform_id).await?;
                limits.insert(row.platform_id, limit);
                limit
            }
        };
        list.push(serde_json::json!({
            "id": row.id, "state": row.state, "refused": refused(row.id),
            "html": draft_html(state, user, &view(row), limit, back)?
        }));
    }
    Ok(list)
}

/// One draft's HTML, as the queue page shows it.
fn draft_html(
    state: &AppState,
    user: &CurrentUser,
    draft: &DraftView,
    limit: usize,
    back: &Back,
) -> Result<String, AppError> {
    Page::new("", Some(user), None)
        .with("d", draft)
        .with("limit", &limit)
        .with("back", back)
        .render_text(&state.templates, "review/draft.html")
}

fn json(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(body)
}

/// The answer to a person's action on one draft.
#[allow(clippy::too_many_arguments)]
async fn answer(
    req: &HttpRequest,
    state: &AppState,
    user: &CurrentUser,
    session: &TypedSession,
    id: DraftId,
    back: &Back,
    typed: Option<&str>,
    result: Result<DraftRow, Refused>,
    done: &str,
) -> Result<HttpResponse, AppError> {
    let json_wanted = scripted(req);
    match result {
        Ok(row) => {
            if json_wanted {
                let drafts =
                    drafts_json(state, user, std::slice::from_ref(&row), back, |_| None).await?;
                return Ok(json(
                    StatusCode::OK,
                    serde_json::json!({"message": done, "drafts": drafts}),
                ));
            }
            FlashMessage::success(done).send();
            Ok(see_other(&back.location(Some(row.id))))
        }
        Err(Refused::NotFound) => Err(AppError::NotFound),
        Err(Refused::Invalid(message)) => {
            if json_wanted {
                return Ok(json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    serde_json::json!({"message": message, "errors": {"alt_text": message}}),
                ));
            }
            render_queue(
                state,
                user,
                session,
                back,
                None,
                Some((
                    id.get(),
                    typed.unwrap_or(""),
                    message,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )),
            )
            .await
        }
        Err(Refused::State(message)) => {
            if json_wanted {
                let mut body = serde_json::json!({"message": message});
                if let Some((row, limit)) = state.review.draft(user.uid, id).await? {
                    let html = draft_html(state, user, &view(&row), limit, back)?;
                    body["drafts"] =
                        serde_json::json!([{"id": row.id, "state": row.state, "html": html}]);
                }
                return Ok(json(StatusCode::CONFLICT, body));
            }
            // Something typed is not lost: the page comes back with it.
            if let Some(typed) = typed.filter(|t| !t.trim().is_empty()) {
                return render_queue(
                    state,
                    user,
                    session,
                    back,
                    None,
                    Some((id.get(), typed, message, StatusCode::CONFLICT)),
                )
                .await;
            }
            FlashMessage::error(message).send();
            Ok(see_other(&back.location(Some(id.get()))))
        }
    }
}

/// POST /review/{id}/{action}: save, approve, reject, retry or regenerate one draft.
pub async fn act(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<(DraftId, String)>,
    form: web::Form<DraftForm>,
) -> Result<HttpResponse, AppError> {
    check_csrf(&user, &req, &form.csrf_token)?;
    let (id, action) = path.into_inner();
    let back = form.back();
    let text = form.alt_text.as_deref();
    let (result, typed, done) = match action.as_str() {
        "save" => {
            let text = text.unwrap_or("");
            (
                state.review.save(user.uid, id, text).await?,
                Some(text),
                "Your edit is saved; the draft waits for your approval.",
            )
        }
        "approve" => (
            state.review.approve(user.uid, id, text).await?,
            text,
            "Approved: fedialt is publishing the description to the post.",
        ),
        "reject" => (
            state.review.reject(user.uid, id).await?,
            None,
            "Rejected: the post is left as it is.",
        ),
        "retry" => (
            state.review.retry(user.uid, id, text).await?,
            text,
            "fedialt is publishing the description again.",
        ),
        "regenerate" => (
            regenerate(&state, &user, id).await?,
            None,
            "A new description is drafted; read it before you approve it.",
        ),
        _ => return Err(AppError::NotFound),
    };
    answer(
        &req, &state, &user, &session, id, &back, typed, result, done,
    )
    .await
}

/// Drafts the image's description again with the person's current settings (the model call is
/// made here, in the request: the person waits for it).
async fn regenerate(
    state: &AppState,
    user: &CurrentUser,
    id: DraftId,
) -> Result<Result<DraftRow, Refused>, AppError> {
    let Some((draft, _)) = state.review.draft(user.uid, id).await? else {
        return Ok(Err(Refused::NotFound));
    };
    if !review::REGENERATE_FROM.contains(&draft.state.as_str()) {
        return Ok(Err(Refused::State(review::not_now(
            &draft.state,
            "regenerated",
        ))));
    }
    // One regenerate at a time per person: it holds a model slot that everyone's runs share.
    let Some(_turn) = state.review.regenerating.turn(user.uid) else {
        return Ok(Err(Refused::State(
            "Another of your drafts is being regenerated; wait for it to finish, then try again."
                .into(),
        )));
    };
    let settings = match state
        .settings
        .get_user_settings(user.uid, PlatformId(draft.platform_id))
        .await
    {
        Ok((_, settings)) => settings.settings,
        Err(crate::services::settings::SettingsError::NotFound) => {
            return Ok(Err(Refused::NotFound))
        }
        Err(crate::services::settings::SettingsError::Store(e)) => return Err(e.into()),
    };
    Ok(
        match state
            .worker
            .describe_again(
                &draft.image_url,
                &settings,
                &draft.post_text,
                draft.language.as_deref(),
            )
            .await
        {
            Ok(text) => {
                state
                    .review
                    .regenerated(user.uid, &draft, &text, &state.worker.model().await)
                    .await?
            }
            Err(reason) => Err(Refused::State(format!(
                "No new description could be drafted: {reason}. The draft is as it was."
            ))),
        },
    )
}

/// POST /review/bulk: draft_ids (repeated), action = approve | reject.
pub async fn bulk(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let mut csrf = String::new();
    let mut action = String::new();
    let mut ids = Vec::new();
    let mut bad_id = false;
    let (mut back_state, mut back_page) = (None, None);
    // Per draft, from the page: the text typed and not saved (alt_text_{id}) and the version
    // shown (version_{id}).
    let mut edits: std::collections::HashMap<i64, BulkEdit> = std::collections::HashMap::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "csrf_token" => csrf = value.into_owned(),
            "action" => action = value.into_owned(),
            "draft_ids" => match value.trim().parse::<i64>() {
                Ok(id) => ids.push(id),
                Err(_) => bad_id = true,
            },
            "back_state" => back_state = Some(value.into_owned()),
            "back_page" => back_page = Some(value.into_owned()),
            key => {
                if let Some(id) = key.strip_prefix("alt_text_").and_then(|i| i.parse().ok()) {
                    edits.entry(id).or_default().text = Some(value.into_owned());
                } else if let Some(id) = key.strip_prefix("version_").and_then(|i| i.parse().ok()) {
                    edits.entry(id).or_default().version = value.trim().parse().ok();
                }
            }
        }
    }
    check_csrf(&user, &req, &csrf)?;
    let back = Back::parse(back_state.as_deref(), back_page.as_deref());
    let json_wanted = scripted(&req);
    let refuse = |message: String| -> Result<HttpResponse, AppError> {
        if json_wanted {
            return Ok(json(
                StatusCode::UNPROCESSABLE_ENTITY,
                serde_json::json!({"message": message}),
            ));
        }
        FlashMessage::error(message).send();
        Ok(see_other(&back.location(None)))
    };
    let approve = match action.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return refuse("The action must be approve or reject.".into()),
    };
    if bad_id {
        return refuse("Each of draft_ids must be a draft's number.".into());
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return refuse("Select at least one draft first (draft_ids was empty).".into());
    }
    if ids.len() > review::MAX_BULK {
        return refuse(format!(
            "At most {} drafts can be changed at once (draft_ids had {}).",
            review::MAX_BULK,
            ids.len()
        ));
    }
    let Some(drafts) = state.review.drafts(user.uid, &ids).await? else {
        return Err(AppError::NotFound);
    };
    let results = state
        .review
        .bulk(user.uid, &drafts, approve, &edits)
        .await?;
    let done = results.iter().filter(|(_, r)| r.is_ok()).count();
    let verb = if approve { "Approved" } else { "Rejected" };
    let mut message = match done {
        1 => format!("{verb} 1 draft."),
        n => format!("{verb} {n} drafts."),
    };
    let refused: Vec<String> = results
        .iter()
        .filter_map(|(d, r)| match r {
            Err(Refused::State(m) | Refused::Invalid(m)) => Some(format!("draft {}: {m}", d.id)),
            _ => None,
        })
        .collect();
    if !refused.is_empty() {
        message.push_str(&format!(
            " {} could not be: {}",
            refused.len(),
            refused.join(" ")
        ));
    }
    if approve && done > 0 {
        message.push_str(" fedialt is publishing the approved descriptions.");
    }
    if json_wanted {
        let now = state.review.states(user.uid, &ids).await?;
        let list = drafts_json(&state, &user, &now, &back, |id| {
            results.iter().find_map(|(d, r)| match r {
                Err(Refused::State(m) | Refused::Invalid(m)) if d.id == id => Some(m.clone()),
                _ => None,
            })
        })
        .await?;
        return Ok(json(
            StatusCode::OK,
            serde_json::json!({"message": message, "drafts": list}),
        ));
    }
    if refused.is_empty() {
        FlashMessage::success(message).send();
    } else {
        FlashMessage::warning(message).send();
    }
    Ok(see_other(&back.location(None)))
}

#[derive(Deserialize)]
pub struct StatusQuery {
    #[serde(default)]
    ids: String,
    state: Option<String>,
    page: Option<String>,
}

/// GET /review/status?ids=1,2: the drafts' states and HTML, for the page's script.
pub async fn status(
    user: CurrentUser,
    state: web::Data<AppState>,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, AppError> {
    let ids: Vec<i64> = query
        .ids
        .split(',')
        .filter_map(|i| i.trim().parse().ok())
        .take(review::PAGE_SIZE as usize * 2)
        .collect();
    let back = Back::parse(query.state.as_deref(), query.page.as_deref());
    let rows = state.review.states(user.uid, &ids).await?;
    let list = drafts_json(&state, &user, &rows, &back, |_| None).await?;
    Ok(json(StatusCode::OK, serde_json::json!({"drafts": list})))
}

#[derive(Serialize)]
struct Published {
    account: String,
    alt_text: String,
    status_url: String,
    preview_url: String,
    published: String,
    post_text: String,
    auto_published: bool,
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    page: Option<String>,
}

/// GET /history: what was published when, newest first, with links to the posts.
pub async fn history(
    user: CurrentUser,
    state: web::Data<AppState>,
    query: web::Query<HistoryQuery>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let page = query
        .page
        .as_deref()
        .and_then(|p| p.parse::<i64>().ok())
        .filter(|p| (1..=1_000_000).contains(p))
        .unwrap_or(1);
    let accounts: std::collections::HashMap<i64, String> = state
        .platforms
        .list(user.uid)
        .await?
        .into_iter()
        .map(|p| (p.id.get(), p.handle()))
        .collect();
    let mut rows = state.review.history(user.uid, page).await?;
    let more = rows.len() as i64 > review::PAGE_SIZE;
    rows.truncate(review::PAGE_SIZE as usize);
    let items: Vec<Published> = rows
        .iter()
        .map(|d| Published {
            account: accounts
                .get(&d.platform_id)
                .cloned()
                .unwrap_or_else(|| "a removed account".into()),
            alt_text: d.alt_text.clone(),
            status_url: d.status_url.clone(),
            preview_url: d.preview_url.clone(),
            published: d.published_at.map(when).unwrap_or_default(),
            post_text: d.post_text.chars().take(120).collect(),
            auto_published: d.auto_published,
        })
        .collect();
    Page::new("Published descriptions", Some(&user), Some(&flashes))
        .with("waiting", &state.waiting(user.uid).await)
        .with("items", &items)
        .with("page", &page)
        .with("more", &more)
        .render(&state.templates, "review/history.html")
}
