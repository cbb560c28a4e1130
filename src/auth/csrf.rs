//! CSRF. Signed-in forms carry the session's own random token. The sign-in form, where there is no
//! session (visitors get none), uses a signed double-submit token: the same value in a cookie and in
//! the form, with an HMAC so that it cannot be made up.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const LOGIN_COOKIE: &str = "fedialt_csrf";

pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

pub fn tokens_match(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

fn mac(key: &[u8; 32], nonce: &[u8]) -> Vec<u8> {
    // new_from_slice only fails for key lengths HMAC cannot take; 32 bytes is always fine.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(b"login-csrf");
            m.update(nonce);
            m.finalize().into_bytes()[..16].to_vec()
        }
        Err(_) => Vec::new(),
    }
}

pub fn new_login_token(key: &[u8; 32]) -> String {
    let mut nonce = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut raw = nonce.to_vec();
    raw.extend(mac(key, &nonce));
    URL_SAFE_NO_PAD.encode(raw)
}

pub fn login_token_valid(key: &[u8; 32], token: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(token) {
        Ok(raw) if raw.len() == 32 => bool::from(raw[16..].ct_eq(&mac(key, &raw[..16]))),
        _ => false,
    }
}

/// The sign-in token the request's cookie already carries, if it is genuine.
pub fn login_token_from(req: &HttpRequest, key: &[u8; 32]) -> Option<String> {
    req.cookie(LOGIN_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|t| login_token_valid(key, t))
}

pub fn login_cookie(token: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(LOGIN_COOKIE, token.to_owned())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .finish()
}

/// The double-submit check: the form's token equals the cookie's, and is genuine.
pub fn login_form_ok(req: &HttpRequest, key: &[u8; 32], form_token: &str) -> bool {
    login_token_from(req, key).is_some_and(|cookie| tokens_match(&cookie, form_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_tokens_are_signed() {
        let key = [3u8; 32];
        let t = new_login_token(&key);
        assert!(login_token_valid(&key, &t));
        assert!(!login_token_valid(&[4u8; 32], &t));
        assert!(!login_token_valid(&key, &random_token()));
        assert!(tokens_match(&t, &t));
        assert!(!tokens_match("", ""));
    }
}
