//! What every page shares: the embedded templates and static files, security headers, the
//! per-request span.

pub mod assets;
pub mod flash;
pub mod middleware;
pub mod page;
pub mod templates;

/// A time for people: "2026-11-29 14:05 UTC".
pub fn when(seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// "5 minutes", "30 seconds": how often a polled account is checked.
pub fn every(interval: std::time::Duration) -> String {
    let secs = interval.as_secs();
    match secs {
        60 => "minute".into(),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "second".into(),
        s => format!("{s} seconds"),
    }
}
