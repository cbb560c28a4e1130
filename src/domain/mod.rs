//! Validated values. Parse at the edge: a value of these types is valid by construction.

pub mod account;
pub mod caption_settings;
pub mod ids;
pub mod platform;

pub use account::{Email, NewPassword, Username};
pub use caption_settings::{CaptionSettings, RawSettings};
pub use ids::{DraftId, PlatformId, RunId, UserId};
pub use platform::{is_hidden_control, InstanceUrl, PlatformType};
