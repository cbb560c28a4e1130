//! /platforms: the person's Mastodon and Pixelfed connections.

pub mod actions;
pub mod add;
pub mod delete;
pub mod list;
pub mod oauth;

use actix_session::Session;

use crate::cache::platforms::PlatformRecord;
use crate::sessions::CURRENT_PLATFORM_KEY;

/// The session's chosen connection if it still exists, else the default, else the oldest.
pub fn pick_current(list: &[PlatformRecord], session: &Session) -> Option<PlatformRecord> {
    let chosen = session.get::<i64>(CURRENT_PLATFORM_KEY).ok().flatten();
    chosen
        .and_then(|id| list.iter().find(|p| p.id == id))
        .or_else(|| list.iter().find(|p| p.is_default))
        .or_else(|| list.first())
        .cloned()
}
