//! GET /runs (a person's runs, newest first) and GET /runs/{id} (one run and its drafts; they are
//! reviewed on /review).

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use actix_web_flash_messages::IncomingFlashMessages;
use serde::Serialize;

use crate::auth::CurrentUser;
use crate::domain::RunId;
use crate::routes::caption::page::state_text;
use crate::routes::error::AppError;
use crate::state::AppState;
use crate::store::runs::RunRow;
use crate::web::page::Page;
use crate::web::when;

#[derive(Serialize)]
struct RunItem {
    id: i64,
    platform_id: i64,
    account: String,
    state: String,
    state_text: &'static str,
    started: String,
    posts_scanned: i32,
    posts_limit: i32,
    images_found: i32,
    drafts_made: i32,
    images_failed: i32,
    media_skipped: i32,
    step: String,
    error: Option<String>,
}

fn item(row: &RunRow, accounts: &HashMap<i64, String>) -> RunItem {
    RunItem {
        id: row.id,
        platform_id: row.platform_id,
        account: accounts
            .get(&row.platform_id)
            .cloned()
            .unwrap_or_else(|| "a removed account".into()),
        state: row.state.clone(),
        state_text: state_text(&row.state),
        started: when(row.created_at),
        posts_scanned: row.posts_scanned,
        posts_limit: row.posts_limit,
        images_found: row.images_found,
        drafts_made: row.drafts_made,
        images_failed: row.images_failed,
        media_skipped: row.media_skipped,
        step: row.step.clone(),
        error: row.error.clone(),
    }
}

async fn accounts(state: &AppState, user: &CurrentUser) -> Result<HashMap<i64, String>, AppError> {
    Ok(state
        .platforms
        .list(user.uid)
        .await?
        .into_iter()
        .map(|p| (p.id.get(), p.handle()))
        .collect())
}

pub async fn list(
    user: CurrentUser,
    state: web::Data<AppState>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let accounts = accounts(&state, &user).await?;
    let runs: Vec<RunItem> = state
        .runs
        .list(user.uid)
        .await?
        .iter()
        .map(|r| item(r, &accounts))
        .collect();
    Page::new("Runs", Some(&user), Some(&flashes))
        .with("waiting", &state.waiting(user.uid).await)
        .with("runs", &runs)
        .with("has_accounts", &!accounts.is_empty())
        .render(&state.templates, "runs/list.html")
}

pub async fn show(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: crate::sessions::TypedSession,
    path: web::Path<RunId>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let Some((row, drafts)) = state.runs.detail(user.uid, path.into_inner()).await? else {
        return Err(AppError::NotFound);
    };
    let list = state.platforms.list(user.uid).await?;
    // The account the review queue shows: the session's, else the default one.
    let current = session.current_platform().or_else(|| {
        list.iter()
            .find(|p| p.is_default)
            .or(list.first())
            .map(|p| p.id)
    });
    let accounts: HashMap<i64, String> = list.iter().map(|p| (p.id.get(), p.handle())).collect();
    let run = item(&row, &accounts);
    Page::new(&format!("Run {}", row.id), Some(&user), Some(&flashes))
        .with("waiting", &state.waiting(user.uid).await)
        .with("run", &run)
        .with("current_platform", &current.map(|p| p.get()))
        .with(
            "active",
            &matches!(row.state.as_str(), "queued" | "running"),
        )
        .with(
            "drafts",
            &drafts
                .iter()
                .map(|d| {
                    let mut value = serde_json::to_value(d).unwrap_or_default();
                    value["state_text"] = crate::services::review::state_text(&d.state).into();
                    value
                })
                .collect::<Vec<_>>(),
        )
        .render(&state.templates, "runs/show.html")
}
