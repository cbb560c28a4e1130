//! POST /platforms/{id}/switch, /default, /rename: each answers 404 for an id that is not the
//! person's, and changes nothing then.

use crate::sessions::TypedSession;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::FlashMessage;
use serde::Deserialize;

use crate::auth::CurrentUser;
use crate::domain::platform::parse_connection_name;
use crate::domain::PlatformId;
use crate::routes::error::AppError;
use crate::routes::see_other;
use crate::state::AppState;
use crate::store;

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf_token: String,
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
pub struct SwitchForm {
    #[serde(default)]
    pub csrf_token: String,
    /// Where to go next: the review queue or the caption page (a run's page sends its account's
    /// queue); anything else goes to /platforms.
    pub next: Option<String>,
}

pub async fn switch(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    path: web::Path<PlatformId>,
    form: web::Form<SwitchForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let platform = super::owned(&state, &user, path.into_inner()).await?;
    session.set_current_platform(platform.id)?;
    FlashMessage::success(format!("Now working on {}.", platform.handle())).send();
    let next = match form.next.as_deref() {
        Some("/review?state=all") => "/review?state=all",
        Some("/review") => "/review",
        Some("/caption_generation") => "/caption_generation",
        _ => "/platforms",
    };
    Ok(see_other(next))
}

pub async fn make_default(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<PlatformId>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let id = path.into_inner();
    let uid = user.uid;
    let done = state
        .platforms
        .write(uid, Vec::new(), move |conn| {
            Box::pin(async move { store::platforms::set_default(conn, id.get(), uid.get()).await })
        })
        .await?;
    if !done {
        return Err(AppError::NotFound);
    }
    FlashMessage::success("Default account changed: new sessions start with it.").send();
    Ok(see_other("/platforms"))
}

pub async fn rename(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<PlatformId>,
    form: web::Form<RenameForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let id = path.into_inner();
    let uid = user.uid;
    super::owned(&state, &user, id).await?;
    let name = match parse_connection_name(&form.name) {
        Ok(name) => name,
        Err(m) => {
            FlashMessage::error(format!("Name {m}; the account was not renamed.")).send();
            return Ok(see_other("/platforms"));
        }
    };
    let shown = name.clone();
    let done = state
        .platforms
        .write(uid, Vec::new(), move |conn| {
            Box::pin(async move {
                store::platforms::rename(conn, id.get(), uid.get(), &name, store::now()).await
            })
        })
        .await?;
    if !done {
        return Err(AppError::NotFound);
    }
    FlashMessage::success(format!("Renamed to {shown}.")).send();
    Ok(see_other("/platforms"))
}

#[derive(Deserialize)]
pub struct WatchForm {
    #[serde(default)]
    csrf_token: String,
    /// Checkboxes: present ("on") when ticked, absent when not.
    watch: Option<String>,
    auto_publish: Option<String>,
}

/// A checkbox's value: absent is off; browsers send "on" (scripts may send true/1/off/false/0).
fn checkbox(field: &str, value: Option<&str>) -> Result<bool, String> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("off" | "false" | "0" | "") => Ok(false),
        Some("on" | "true" | "1" | "yes") => Ok(true),
        Some(_) => Err(format!(
            "{field} is a checkbox: send it as \"on\" (or true, 1, yes) when ticked, and leave \
             it out (or send off, false, 0) when not"
        )),
    }
}

/// POST /platforms/{id}/watch: whether new posts of the connection get drafts on their own, and
/// whether those are published without review.
pub async fn watch(
    user: CurrentUser,
    state: web::Data<AppState>,
    path: web::Path<PlatformId>,
    form: web::Form<WatchForm>,
) -> Result<HttpResponse, AppError> {
    user.check_csrf(&form.csrf_token)?;
    let id = path.into_inner();
    let platform = super::owned(&state, &user, id).await?;
    let parsed = checkbox("Watch for new posts", form.watch.as_deref()).and_then(|watch| {
        checkbox(
            "Publish drafts without review",
            form.auto_publish.as_deref(),
        )
        .map(|auto| (watch, auto))
    });
    let (watch, auto_publish) = match parsed {
        Ok(both) => both,
        Err(message) => {
            FlashMessage::error(format!("{message}; nothing was changed.")).send();
            return Ok(see_other("/platforms"));
        }
    };
    let before = state.watches.get(id).await?;
    let start_after = if watch && !before.enabled {
        newest_post(&state, &user, id).await
    } else {
        None
    };
    let saved = state
        .watches
        .save(user.uid, id, watch, auto_publish, start_after)
        .await?
        .ok_or(AppError::NotFound)?;
    if saved.enabled && !before.enabled {
        // A worker takes the account up at once (this process's, or another's through the
        // database's notification).
        state.runs.wake.notify_one();
        crate::jobs::signal_new_job(&state.db).await;
    }
    let handle = platform.handle();
    let words = match (saved.enabled, saved.auto_publish) {
        (false, false) => format!("{handle} is not watched: new posts get drafts only from runs you start."),
        (false, true) => format!(
            "{handle} is not watched: new posts get drafts only from runs you start. \
             Publish without review stays ticked for when you watch it again."
        ),
        (true, false) => format!(
            "Watching {handle}: new posts with undescribed images get drafts, which wait for your review."
        ),
        (true, true) => format!(
            "Watching {handle}: descriptions of new posts are published without review."
        ),
    };
    FlashMessage::success(words).send();
    Ok(see_other("/platforms"))
}

/// The account's newest post now, so that watching takes the posts after it: "0" when it has none
/// (every post that appears is new); None when the instance could not say within a few seconds
/// (the watcher then takes the posts dated from when watching was turned on).
async fn newest_post(state: &AppState, user: &CurrentUser, id: PlatformId) -> Option<String> {
    use crate::platforms::statuses::{older, Cursor};
    let row = {
        let mut conn = state.db.conn().await.ok()?;
        store::platforms::owned(&mut conn, id.get(), user.uid.get())
            .await
            .ok()??
    };
    let (instance, token) = crate::platforms::connect::credentials(&state.secrets, &row).ok()?;
    let page = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state
            .instances
            .statuses(&instance, &token, &row.account_id, &Cursor::Start),
    )
    .await
    .ok()?
    .ok()?;
    Some(
        page.statuses
            .into_iter()
            .map(|s| s.id)
            .reduce(|a, b| if older(&a, &b) { b } else { a })
            .unwrap_or_else(|| "0".to_owned()),
    )
}
