//! Passwords, sign-in, CSRF, the throttle, and the extractors that yield the current person.

pub mod csrf;
pub mod password;
pub mod throttle;
pub mod user;

pub use user::{AdminUser, CurrentUser, SessionUser};
