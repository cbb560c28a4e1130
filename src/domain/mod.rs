//! Validated values. Parse at the edge: a value of these types is valid by construction.

pub mod account;
pub mod platform;

pub use account::{Email, NewPassword, Username};
pub use platform::{InstanceUrl, PlatformType};
