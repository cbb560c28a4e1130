//! GET /caption_generation. Warm, it costs no SQL: the session, the person's connections and the
//! chosen one's settings come from the near cache after one shared PING (or, with the near cache
//! off, the session's GET and one MGET of the rest).

use crate::sessions::TypedSession;
use actix_web::{web, HttpResponse};
use actix_web_flash_messages::IncomingFlashMessages;

use super::view_or_redirect;
use crate::auth::CurrentUser;
use crate::routes::error::AppError;
use crate::services::runs::RunStatus;
use crate::state::AppState;
use crate::web::page::Page;

pub async fn show(
    user: CurrentUser,
    state: web::Data<AppState>,
    session: TypedSession,
    flashes: IncomingFlashMessages,
) -> Result<HttpResponse, AppError> {
    let view = view_or_redirect(&state, &session, user.uid, true).await?;
    let s = &view.settings.settings;
    let run = view.run.clone().unwrap_or_else(RunStatus::none);
    let watch = view.watch.clone().unwrap_or_default();
    let bar_max = if run.state == "none" {
        s.max_posts_per_run as i32
    } else {
        run.posts_limit.max(1)
    };
    Page::new("Caption generation", Some(&user), Some(&flashes))
        .with("waiting", &view.waiting)
        .with("state_text", &state_text(&run.state))
        .with("worker_here", &state.config.worker)
        .with("active", &run.is_active())
        .with("bar_max", &bar_max)
        .with("run", &run)
        .with("platform", &view.current)
        .with("handle", &view.current.handle())
        .with("platform_type", &view.current.platform_type.label())
        .with("other_platforms", &(view.platforms.len() > 1))
        .with("settings", s)
        .with("saved", &view.settings.saved)
        .with("delay", &format_seconds(s.processing_delay))
        .with("watch", &watch)
        .with(
            "watch_since",
            &watch.since.map(crate::web::when).unwrap_or_default(),
        )
        .with(
            "last_post",
            &watch.last_post_at.map(crate::web::when).unwrap_or_default(),
        )
        .with("poll_every", &crate::web::every(state.config.watch_poll))
        .render(&state.templates, "caption/generation.html")
}

/// A run's state in words.
pub fn state_text(state: &str) -> &'static str {
    match state {
        "queued" => "Waiting to start",
        "running" => "Running",
        "completed" => "Finished",
        "failed" => "Stopped with an error",
        "cancelled" => "Cancelled",
        _ => "No run yet",
    }
}

/// "1 second", "0.5 seconds", "no pause".
pub fn format_seconds(seconds: f64) -> String {
    if seconds == 0.0 {
        return "no pause".into();
    }
    let text = format!("{seconds}");
    if seconds == 1.0 {
        format!("{text} second")
    } else {
        format!("{text} seconds")
    }
}
