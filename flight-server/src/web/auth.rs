//! Signing in and out of the dashboard: the same users, passwords, throttling and sessions as
//! Flight SQL. The session is a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` under TLS); every
//! form that changes something carries a token derived from the session (or, before sign-in,
//! from a nonce cookie), so another site cannot submit it.

use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::access::Caller;

/// The session cookie.
pub const SESSION: &str = "tessera_session";

/// The sign-in form's nonce cookie.
pub const NONCE: &str = "tessera_signin";

/// A signed-in browser.
pub struct Session {
    pub caller: Caller,
    pub token: String,
    /// The token every form of this session carries.
    pub csrf: String,
}

/// A cookie's name as sent: under TLS with the `__Host-` prefix, which browsers accept only from
/// this host over TLS, for the whole site (so no sibling site or plaintext page can plant it).
fn cookie_name(name: &str, secure: bool) -> String {
    match secure {
        true => format!("__Host-{name}"),
        false => name.to_string(),
    }
}

/// The value of cookie `name`.
pub fn cookie(headers: &HeaderMap, name: &str, secure: bool) -> Option<String> {
    let name = cookie_name(name, secure);
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 256 && v.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// A `Set-Cookie` value (`max_age` 0 deletes it).
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: u64) -> HeaderValue {
    let name = cookie_name(name, secure);
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Whether a form was sent from another site: its `Origin` (or the browser's `Sec-Fetch-Site`)
/// says so. Forms are refused then, whatever cookies came with them.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if text("sec-fetch-site").is_some_and(|site| site == "cross-site" || site == "same-site") {
        return true;
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        (Some(_), None) => true,
        _ => false,
    }
}

/// The form token of a session (or of a sign-in nonce).
pub fn form_token(secret: &str) -> String {
    hex::encode(&Sha256::digest(format!("tessera form\0{secret}").as_bytes())[..16])
}

/// Whether `sent` is the form token of `secret` (compared in constant time).
pub fn form_token_matches(secret: &str, sent: &str) -> bool {
    let expected = form_token(secret);
    expected.len() == sent.len()
        && expected
            .bytes()
            .zip(sent.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A redirect (303: the browser then GETs `to`).
pub fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The sign-in page with a fresh nonce (and its cookie).
pub fn sign_in_page(secure: bool, message: Option<&str>, status: StatusCode) -> Response {
    let nonce = crate::access::random_secret();
    let mut response = (status, Html(super::page::sign_in(&form_token(&nonce), message))).into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(NONCE, &nonce, secure, 600));
    response
}
