//! /admin/runs: every person's runs, newest first, filterable by state; an admin cancels any
//! active run or puts a failed one back in the queue (it goes on from where it stopped). Both are
//! in the audit log.

use actix_web::{web, HttpResponse};
use actix_web_flash_messages::{FlashMessage, IncomingFlashMessages};
use serde::{Deserialize, Serialize};

use crate::auth::AdminUser;
use crate::domain::{PlatformId, RunId, UserId};
use crate::routes::caption::page::state_text;
use crate::routes::error::AppError;
use crate::routes::platforms::actions::CsrfForm;
use crate::routes::see_other;
use crate::state::AppState;
use crate::store;
use crate::web::page::Page;
use crate::web::when;

const PAGE_SIZE: i64 = 50;
const STATES: [&str; 5] = ["queued", "running", "completed", "failed", "cancelled"];

#[derive(Deserialize)]
pub struct RunsQuery {
    state: Option<String>,
    page: Option<String>,
}

#[derive(Serialize)]
struct RunLine {
    id: i64,
    person: String,
    state: String,
    state_text: &'static str,
    started: String,
    posts_scanned: i32,
    posts_limit: i32,
    drafts_made: i32,
    images_failed: i32,
    error: Option<String>,
    active: bool,
}

#[derive(Serialize)]
struct Filter {
    state: &'static str,
    count: i64,
    current: bool,
}

pub async fn list(
    admin: AdminUser,
    state: web::Data<AppState>,
    query: web::Query<RunsQuery>,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let wanted = query
        .state
        .as_deref()
        .and_then(|s| STATES.iter().find(|k| **k == s).copied());
    let page: i64 = query
        .page
        .as_deref()
        .and_then(|p| p.parse().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let mut conn = state.db.conn().await?;
    let counts = store::runs::counts(&mut conn).await?;
    let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let total = match wanted {
        Some(s) => count(s),
        None => counts.iter().map(|(_, n)| n).sum(),
    };
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = page.min(pages);
    let rows = store::runs::all(&mut conn, wanted, PAGE_SIZE, (page - 1) * PAGE_SIZE).await?;
    let people: std::collections::HashMap<i64, String> = store::users::list(&mut conn)
        .await?
        .into_iter()
        .map(|u| (u.id, u.username))
        .collect();
    drop(conn);
    let lines: Vec<RunLine> = rows
        .iter()
        .map(|r| RunLine {
            id: r.id,
            person: people.get(&r.user_id).cloned().unwrap_or_default(),
            state: r.state.clone(),
            state_text: state_text(&r.state),
            started: when(r.created_at),
            posts_scanned: r.posts_scanned,
            posts_limit: r.posts_limit,
            drafts_made: r.drafts_made,
            images_failed: r.images_failed,
            error: r.error.clone(),
            active: store::runs::ACTIVE.contains(&r.state.as_str()),
        })
        .collect();
    let mut filters = vec![Filter {
        state: "all",
        count: counts.iter().map(|(_, n)| n).sum(),
        current: wanted.is_none(),
    }];
    filters.extend(STATES.iter().map(|s| Filter {
        state: s,
        count: count(s),
        current: wanted == Some(*s),
    }));
    Page::new("All runs", Some(&admin), Some(&flashes))
        .with("runs", &lines)
        .with("filters", &filters)
        .with("state", &wanted.unwrap_or("all"))
        .with("page", &page)
        .with("pages", &pages)
        .render(&state.templates, "admin/runs.html")
}

/// POST /admin/runs/{id}/{action}: cancel or retry.
pub async fn act(
    admin: AdminUser,
    state: web::Data<AppState>,
    path: web::Path<(RunId, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    admin.check_csrf(&form.csrf_token)?;
    let (id, action) = path.into_inner();
    let mut conn = state.db.conn().await?;
    let row = store::runs::by_id(&mut conn, id.get())
        .await?
        .ok_or(AppError::NotFound)?;
    let owner = store::users::by_id(&mut conn, row.user_id)
        .await?
        .map(|u| u.username)
        .unwrap_or_default();
    drop(conn);
    let (done, audit) = match action.as_str() {
        "cancel" => {
            let cancelled = state
                .runs
                .cancel(UserId(row.user_id), PlatformId(row.platform_id))
                .await?
                .filter(|r| r.id == row.id);
            match cancelled {
                Some(_) => (
                    format!("Run {id} of {owner} is cancelled; its drafts are kept."),
                    "run cancelled",
                ),
                None => {
                    FlashMessage::info(format!(
                        "Run {id} was not going any more, so there was nothing to cancel."
                    ))
                    .send();
                    return Ok(see_other("/admin/runs"));
                }
            }
        }
        "retry" => match state.runs.retry(id).await {
            Ok(Some(_)) => (
                format!(
                    "Run {id} of {owner} is back in the queue; it goes on from where it stopped."
                ),
                "run retried",
            ),
            Ok(None) => {
                FlashMessage::info(format!(
                    "Run {id} has not failed, so there is nothing to retry."
                ))
                .send();
                return Ok(see_other("/admin/runs"));
            }
            Err(e) if e.is_unique_violation() => {
                FlashMessage::error(format!(
                    "Run {id} cannot be retried: that account has another run going. Cancel it first."
                ))
                .send();
                return Ok(see_other("/admin/runs"));
            }
            Err(e) => return Err(e.into()),
        },
        _ => return Err(AppError::NotFound),
    };
    let mut conn = state.db.conn().await?;
    store::audit::record(
        &mut conn,
        (admin.uid.get(), &admin.username),
        audit,
        &format!("run {id} of {owner}"),
        "",
    )
    .await?;
    drop(conn);
    FlashMessage::success(done).send();
    Ok(see_other("/admin/runs"))
}
