//! The app's one error type: every layer's error converts into it (`From`), and routes/error.rs
//! turns it into a response, in that one place.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("sign-in required")]
    SignInRequired { next: String },
    #[error("sign-in required (JSON)")]
    Unauthenticated,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("CSRF token missing or wrong")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("too many requests")]
    TooManyRequests { retry_after: u64, message: String },
    #[error("busy: {0}")]
    Busy(&'static str),
    #[error("the database is unavailable")]
    Unavailable(#[source] StoreError),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// Go elsewhere (a page that cannot be shown yet says where to go instead, with a flash).
    #[error("see {0}")]
    Redirect(String),
    /// A JSON route's own answer to a request it refuses: the status and the body.
    #[error("refused with {status}")]
    Json {
        status: actix_web::http::StatusCode,
        body: serde_json::Value,
    },
}

impl From<crate::platforms::connect::ConnectError> for AppError {
    fn from(e: crate::platforms::connect::ConnectError) -> Self {
        use crate::platforms::connect::ConnectError;
        match e {
            ConnectError::Store(e) => e.into(),
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<crate::services::settings::SettingsError> for AppError {
    fn from(e: crate::services::settings::SettingsError) -> Self {
        use crate::services::settings::SettingsError;
        match e {
            SettingsError::NotFound => AppError::NotFound,
            SettingsError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            AppError::Unavailable(e)
        } else {
            AppError::Internal(anyhow::Error::new(e))
        }
    }
}

impl From<actix_session::SessionInsertError> for AppError {
    fn from(e: actix_session::SessionInsertError) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

impl From<actix_web::error::HttpError> for AppError {
    fn from(e: actix_web::error::HttpError) -> Self {
        AppError::Internal(anyhow::anyhow!("building the response: {e}"))
    }
}

impl From<crate::crypto::CryptoError> for AppError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

impl From<crate::auth::password::PasswordError> for AppError {
    fn from(e: crate::auth::password::PasswordError) -> Self {
        match e {
            crate::auth::password::PasswordError::Busy => AppError::Busy(
                "fedialt is checking many passwords at once right now. Nothing was changed; \
                 please try again in a moment.",
            ),
            other => AppError::Internal(anyhow::Error::new(other)),
        }
    }
}
