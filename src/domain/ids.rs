//! Ids that say what they name, so that a person's id and a connection's id cannot change places
//! in a call (`get_platform_by_id(platform, user)` beside `get_user_settings(user, platform)`).
//! They are the database's integers underneath, and JSON numbers on the wire.

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// A person with an account (users.id).
    UserId
);
id!(
    /// One of a person's Mastodon or Pixelfed connections (platform_connections.id).
    PlatformId
);
id!(
    /// A caption run (caption_jobs.id).
    RunId
);
id!(
    /// A drafted description of one image (caption_drafts.id).
    DraftId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_numbers_in_json() {
        assert_eq!(serde_json::to_string(&PlatformId(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<UserId>("12").unwrap(), UserId(12));
        assert_eq!(PlatformId(3).to_string(), "3");
    }
}
