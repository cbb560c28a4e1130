//! Every Redis key name and TTL, in one place. Keys are `{prefix}g{generation}:{logical}` for cached
//! copies (a new generation, after Redis came back as another server, never reads an older one's
//! values) and `{prefix}{logical}` for the few things that are not copies of the database.

use std::time::Duration;

/// What a key holds, for the metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Session,
    Platform,
    Settings,
    Progress,
    Throttle,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Session,
        Kind::Platform,
        Kind::Settings,
        Kind::Progress,
        Kind::Throttle,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Platform => "platform",
            Kind::Settings => "settings",
            Kind::Progress => "progress",
            Kind::Throttle => "throttle",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind of a logical key, from its first segment.
    pub fn of_logical(logical: &str) -> Kind {
        match logical.split(':').next() {
            Some("session") => Kind::Session,
            Some("platform") | Some("platforms") => Kind::Platform,
            Some("settings") => Kind::Settings,
            Some("progress") => Kind::Progress,
            _ => Kind::Throttle,
        }
    }
}

/// A version no real row reaches: a tombstone carrying it outranks every value. Kept below 2^53
/// so that Lua's numbers (doubles) compare it exactly.
pub const TOMBSTONE: i64 = 1_000_000_000_000_000;

pub fn session(id_hash: &str) -> String {
    format!("session:{id_hash}")
}

/// A person's list of platform connections.
pub fn platforms(user_id: i64) -> String {
    format!("platforms:{user_id}")
}

/// A connection's caption settings.
pub fn settings(platform_id: i64) -> String {
    format!("settings:{platform_id}")
}

pub fn throttle(scope: &str) -> String {
    format!("throttle:{scope}")
}

/// Cached copies of database rows live this long without being read.
pub const ROW_TTL: Duration = Duration::from_secs(24 * 3600);

/// The sign-in throttle window.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
