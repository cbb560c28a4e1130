//! What every page shares: the embedded templates and static files, security headers, the
//! per-request span.

pub mod assets;
pub mod flash;
pub mod middleware;
pub mod page;
pub mod templates;
