//! Fake servers for what the tests cannot run: a Mastodon or Pixelfed instance, a vision model.

pub mod instance;
pub mod model;
pub mod pixels;
