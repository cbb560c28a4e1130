//! Every Redis key name and TTL, in one place. Keys are `{prefix}g{generation}:{logical}` for cached
//! copies (a new generation, after Redis came back as another server, never reads an older one's
//! values) and `{prefix}{logical}` for the few things that are not copies of the database.

use std::time::Duration;

use crate::domain::ids::{PlatformId, UserId};

/// What a key holds, for the metrics labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Session,
    Platform,
    Settings,
    Progress,
    Throttle,
    /// System-wide settings admins save (the caption defaults).
    Admin,
    /// Whether a connection is watched for new posts, and what its watcher last saw.
    Watch,
    /// How many of a person's drafts wait for review (the navigation's count).
    Waiting,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Session,
        Kind::Platform,
        Kind::Settings,
        Kind::Progress,
        Kind::Throttle,
        Kind::Admin,
        Kind::Watch,
        Kind::Waiting,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Session => "session",
            Kind::Platform => "platform",
            Kind::Settings => "settings",
            Kind::Progress => "progress",
            Kind::Throttle => "throttle",
            Kind::Admin => "admin",
            Kind::Watch => "watch",
            Kind::Waiting => "waiting",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind named by its label (as an outbox row stores it).
    pub fn from_label(label: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.label() == label)
    }
}

/// A key as a kind and the id it is about: what an outbox row stores, so nothing parses a built
/// key back. `logical()` builds the key's text, here and only here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    kind: Kind,
    ident: String,
}

impl Key {
    pub fn session(id_hash: &str) -> Key {
        Key::of(Kind::Session, id_hash)
    }

    /// A person's list of platform connections.
    pub fn platforms(user_id: UserId) -> Key {
        Key::of(Kind::Platform, &user_id.to_string())
    }

    /// A connection's caption settings.
    pub fn settings(platform_id: PlatformId) -> Key {
        Key::of(Kind::Settings, &platform_id.to_string())
    }

    /// The live progress of a connection's current or last run.
    pub fn progress(platform_id: PlatformId) -> Key {
        Key::of(Kind::Progress, &platform_id.to_string())
    }

    /// A system-wide setting admins save ("caption_defaults").
    pub fn admin(name: &str) -> Key {
        Key::of(Kind::Admin, name)
    }

    /// A connection's watch: its two settings and what its watcher last saw.
    pub fn watch(platform_id: PlatformId) -> Key {
        Key::of(Kind::Watch, &platform_id.to_string())
    }

    /// How many of a person's drafts wait for review.
    pub fn waiting(user_id: UserId) -> Key {
        Key::of(Kind::Waiting, &user_id.to_string())
    }

    pub fn throttle(scope: &str) -> Key {
        Key::of(Kind::Throttle, scope)
    }

    /// A key from an outbox row's two columns.
    pub fn from_parts(kind: &str, ident: &str) -> Option<Key> {
        Kind::from_label(kind).map(|kind| Key::of(kind, ident))
    }

    fn of(kind: Kind, ident: &str) -> Key {
        Key {
            kind,
            ident: ident.to_owned(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn ident(&self) -> &str {
        &self.ident
    }

    /// The key's text under the prefix and generation.
    pub fn logical(&self) -> String {
        let segment = match self.kind {
            Kind::Session => "session",
            Kind::Platform => "platforms",
            Kind::Settings => "settings",
            Kind::Progress => "progress",
            Kind::Throttle => "throttle",
            Kind::Admin => "admin",
            Kind::Watch => "watch",
            Kind::Waiting => "waiting",
        };
        format!("{segment}:{}", self.ident)
    }
}

/// A version no real row reaches: a tombstone carrying it outranks every value. Kept below 2^53
/// so that Lua's numbers (doubles) compare it exactly.
pub const TOMBSTONE: i64 = 1_000_000_000_000_000;

/// Cached copies of database rows live this long without being read.
pub const ROW_TTL: Duration = Duration::from_secs(24 * 3600);

/// The sign-in throttle window.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_row_gives_back_the_key_it_was_written_for() {
        let keys = [
            Key::session("abc"),
            Key::platforms(UserId(7)),
            Key::settings(PlatformId(9)),
            Key::progress(PlatformId(11)),
            Key::throttle("pair:alice|10.0.0.1"),
            Key::watch(PlatformId(13)),
            Key::waiting(UserId(17)),
        ];
        for key in keys {
            let back = Key::from_parts(key.kind().label(), key.ident()).unwrap();
            assert_eq!(back, key);
            assert_eq!(back.logical(), key.logical());
        }
        assert_eq!(Key::platforms(UserId(7)).logical(), "platforms:7");
        assert!(Key::from_parts("something-newer", "1").is_none());
    }
}
