//! Access tokens (and other secrets kept in the database) are encrypted at rest with
//! XChaCha20-Poly1305 under the derived token key: base64(24-byte random nonce || ciphertext).
//! The purpose is bound in as associated data, so a value cannot be moved to another column.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::config::Secret;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("encryption failed")]
    Encrypt,
    #[error("a stored secret could not be decrypted (was FEDIALT_SECRET_KEY changed?)")]
    Decrypt,
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([redacted])")
    }
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> SecretBox {
        SecretBox {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    pub fn seal(&self, purpose: &str, plaintext: &str) -> Result<String, CryptoError> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(STANDARD.encode(out))
    }

    pub fn open(&self, purpose: &str, stored: &str) -> Result<Secret<String>, CryptoError> {
        let raw = STANDARD.decode(stored).map_err(|_| CryptoError::Decrypt)?;
        if raw.len() < 24 {
            return Err(CryptoError::Decrypt);
        }
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&raw[..24]),
                Payload {
                    msg: &raw[24..],
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// The associated data of a platform token's seal: its purpose, its row and its owner, so a sealed
/// value copied into another row, or another person's row, does not open.
pub fn token_binding(purpose: &str, platform_id: i64, user_id: i64) -> String {
    format!("{purpose}; platform_connections.id={platform_id}; users.id={user_id}")
}

/// platform_connections.token_seal for tokens sealed with `token_binding` (1: purpose only).
pub const TOKEN_SEAL_BOUND: i32 = 2;

pub const ACCESS_TOKEN: &str = "platform access token";
pub const REFRESH_TOKEN: &str = "platform refresh token";
pub const CLIENT_SECRET: &str = "oauth client secret";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let b = SecretBox::new(&[9u8; 32]);
        let sealed = b.seal(ACCESS_TOKEN, "tok-123").unwrap();
        assert!(!sealed.contains("tok-123"));
        assert_ne!(
            sealed,
            b.seal(ACCESS_TOKEN, "tok-123").unwrap(),
            "fresh nonce"
        );
        assert_eq!(b.open(ACCESS_TOKEN, &sealed).unwrap().expose(), "tok-123");
        assert!(
            b.open(REFRESH_TOKEN, &sealed).is_err(),
            "bound to its purpose"
        );
        assert!(SecretBox::new(&[8u8; 32])
            .open(ACCESS_TOKEN, &sealed)
            .is_err());
    }

    #[test]
    fn a_token_opens_only_in_its_own_row() {
        let b = SecretBox::new(&[9u8; 32]);
        let sealed = b.seal(&token_binding(ACCESS_TOKEN, 7, 3), "tok").unwrap();
        assert_eq!(
            b.open(&token_binding(ACCESS_TOKEN, 7, 3), &sealed)
                .unwrap()
                .expose(),
            "tok"
        );
        assert!(b.open(&token_binding(ACCESS_TOKEN, 8, 3), &sealed).is_err());
        assert!(b.open(&token_binding(ACCESS_TOKEN, 7, 4), &sealed).is_err());
        assert!(b
            .open(&token_binding(REFRESH_TOKEN, 7, 3), &sealed)
            .is_err());
        assert!(b.open(ACCESS_TOKEN, &sealed).is_err());
    }
}
