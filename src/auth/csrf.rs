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
/// Under https the cookie carries the `__Host-` prefix: the browser then takes it only over https,
/// for this host alone and the whole site, so a sibling subdomain cannot plant one.
pub const LOGIN_COOKIE_HTTPS: &str = "__Host-fedialt_csrf";
/// How long a sign-in form's token is good for.
pub const LOGIN_TOKEN_SECS: i64 = 2 * 3600;

pub fn login_cookie_name(secure: bool) -> &'static str {
    if secure {
        LOGIN_COOKIE_HTTPS
    } else {
        LOGIN_COOKIE
    }
}

pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
}

pub fn tokens_match(expected: &str, given: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

fn mac(key: &[u8; 32], signed: &[u8]) -> Vec<u8> {
    // new_from_slice only fails for key lengths HMAC cannot take; 32 bytes is always fine.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(b"login-csrf v2");
            m.update(signed);
            m.finalize().into_bytes()[..16].to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A sign-in token: a random nonce and the time it was made, signed.
pub fn new_login_token(key: &[u8; 32], now: i64) -> String {
    let mut raw = vec![0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    raw.extend(now.to_be_bytes());
    let tag = mac(key, &raw);
    raw.extend(tag);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Genuine, and made within the last two hours.
pub fn login_token_valid(key: &[u8; 32], token: &str, now: i64) -> bool {
    let Ok(raw) = URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    if raw.len() != 40 || !bool::from(raw[24..].ct_eq(&mac(key, &raw[..24]))) {
        return false;
    }
    let mut made = [0u8; 8];
    made.copy_from_slice(&raw[16..24]);
    let made = i64::from_be_bytes(made);
    (made..made + LOGIN_TOKEN_SECS).contains(&now)
}

/// The sign-in token the request's cookie already carries, if it is genuine and fresh.
pub fn login_token_from(req: &HttpRequest, key: &[u8; 32], secure: bool) -> Option<String> {
    req.cookie(login_cookie_name(secure))
        .map(|c| c.value().to_owned())
        .filter(|t| login_token_valid(key, t, crate::store::now()))
}

pub fn login_cookie(token: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(login_cookie_name(secure), token.to_owned())
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::seconds(LOGIN_TOKEN_SECS))
        .finish()
}

/// The double-submit check: the form's token equals the cookie's, and is genuine and fresh.
pub fn login_form_ok(req: &HttpRequest, key: &[u8; 32], secure: bool, form_token: &str) -> bool {
    login_token_from(req, key, secure).is_some_and(|cookie| tokens_match(&cookie, form_token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_tokens_are_signed_and_expire() {
        let key = [3u8; 32];
        let now = 1_700_000_000;
        let t = new_login_token(&key, now);
        assert!(login_token_valid(&key, &t, now));
        assert!(login_token_valid(&key, &t, now + LOGIN_TOKEN_SECS - 1));
        assert!(
            !login_token_valid(&key, &t, now + LOGIN_TOKEN_SECS),
            "expired"
        );
        assert!(!login_token_valid(&key, &t, now - 1), "not from the future");
        assert!(!login_token_valid(&[4u8; 32], &t, now));
        assert!(!login_token_valid(&key, &random_token(), now));
        assert!(tokens_match(&t, &t));
        assert!(!tokens_match("", ""));
    }
}
