//! Fake servers for what the tests cannot run: a Mastodon or Pixelfed instance.

pub mod instance;
