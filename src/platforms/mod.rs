//! Mastodon and Pixelfed: both serve the Mastodon client API for reading (and Pixelfed for the
//! media description write). The client here speaks it through the private-address guard.

pub mod client;
pub mod connect;
pub mod guard;
pub mod publish;
pub mod statuses;
pub mod stream;

pub use client::{InstanceClient, PlatformError};
