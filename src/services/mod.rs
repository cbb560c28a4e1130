//! The managers that own a database transaction and its cache entry: routes call these, never
//! cache/ or a Redis command. Each is built on the one caching pattern, `Versioned` (versioned.rs).

pub mod model;
pub mod platforms;
pub mod review;
pub mod runs;
pub mod settings;
pub mod versioned;
pub mod waiting;
pub mod watch;
