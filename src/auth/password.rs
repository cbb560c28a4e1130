//! argon2id hashing, on the blocking pool (it is deliberately slow, and takes about 19 MiB a
//! check). The web app caps how many run at once (`PasswordChecks`): past the cap a request is
//! answered at once with "busy" instead of queueing, so a burst of sign-ins cannot take the
//! process's memory with it.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("could not hash the password")]
    Hash,
    #[error("the hashing task failed")]
    Task,
    #[error("too many password checks at once")]
    Busy,
}

/// The cap on concurrent password checks and hashes in the web app.
#[derive(Clone)]
pub struct PasswordChecks {
    permits: Arc<Semaphore>,
}

/// A place in the cap, taken before any other work on a sign-in, so a refused one costs nothing.
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl PasswordChecks {
    pub fn new(at_once: usize) -> PasswordChecks {
        PasswordChecks {
            permits: Arc::new(Semaphore::new(at_once.max(1))),
        }
    }

    /// Twice the machine's cores (4 to 32): enough to keep the cores busy, few enough that their
    /// memory (about 19 MiB each) stays small; more would only queue for the CPU.
    pub fn for_this_machine() -> PasswordChecks {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        PasswordChecks::new((cores * 2).clamp(4, 32))
    }

    pub fn try_permit(&self) -> Result<Permit, PasswordError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map(Permit)
            .map_err(|_| PasswordError::Busy)
    }

    /// The permit moves into the blocking task: a request given up by its client still holds its
    /// place until the hash is done and its memory freed.
    pub async fn verify(
        &self,
        permit: Permit,
        password: Secret<String>,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_blocking(password.expose(), stored)
        })
        .await
        .map_err(|_| PasswordError::Task)?
    }

    pub async fn hash(
        &self,
        permit: Permit,
        password: Secret<String>,
    ) -> Result<String, PasswordError> {
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            hash_blocking(password.expose())
        })
        .await
        .map_err(|_| PasswordError::Task)?
    }
}

pub async fn hash(password: Secret<String>) -> Result<String, PasswordError> {
    tokio::task::spawn_blocking(move || hash_blocking(password.expose()))
        .await
        .map_err(|_| PasswordError::Task)?
}

pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PasswordError::Hash)
}

/// Checks a password against a stored hash. With no hash (unknown user) it checks against a fixed
/// dummy hash, so that an unknown username takes as long as a wrong password.
pub async fn verify(
    password: Secret<String>,
    stored: Option<String>,
) -> Result<bool, PasswordError> {
    tokio::task::spawn_blocking(move || verify_blocking(password.expose(), stored))
        .await
        .map_err(|_| PasswordError::Task)?
}

fn verify_blocking(password: &str, stored: Option<String>) -> Result<bool, PasswordError> {
    let known = stored.is_some();
    let stored = match stored {
        Some(s) => s,
        None => dummy_hash()?,
    };
    let parsed = PasswordHash::new(&stored).map_err(|_| PasswordError::Hash)?;
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    Ok(ok && known)
}

fn dummy_hash() -> Result<String, PasswordError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let h = hash_blocking("not a real password")?;
    Ok(DUMMY.get_or_init(|| h).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_refuses_past_its_size_and_frees_on_drop() {
        let checks = PasswordChecks::new(2);
        let a = checks.try_permit().unwrap();
        let _b = checks.try_permit().unwrap();
        assert!(matches!(checks.try_permit(), Err(PasswordError::Busy)));
        drop(a);
        assert!(checks.try_permit().is_ok());
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash(Secret::new("correct horse battery".into()))
            .await
            .unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(
            verify(Secret::new("correct horse battery".into()), Some(h.clone()))
                .await
                .unwrap()
        );
        assert!(!verify(Secret::new("wrong".into()), Some(h)).await.unwrap());
        assert!(!verify(Secret::new("anything".into()), None).await.unwrap());
    }
}
