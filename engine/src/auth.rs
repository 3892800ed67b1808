//! How a trust recognises its coordinator: a shared secret the coordinator sends as a bearer
//! token, of which the trust keeps only the SHA-256.
//!
//! Only what needs the coordinator's identity depends on it (today: the largest contributions
//! used by the dominance rules); every other query is checked the same for everyone.

use sha2::{Digest, Sha256};

/// The request header carrying the token (`authorization: Bearer <token>`).
pub const TOKEN_HEADER: &str = "authorization";

/// The environment variable that overrides `coordinator_token` in `federation.toml`.
pub const TOKEN_ENV: &str = "TESSERA_COORDINATOR_TOKEN";

/// Shortest token accepted, in characters.
pub const MIN_TOKEN_CHARS: usize = 32;

/// A new random token (256 bits from the operating system, hex).
pub fn generate_token() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system provides random bytes");
    hex::encode(bytes)
}

/// The SHA-256 (hex) a trust stores for `token`.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks a token is long enough to be a secret.
pub fn check_token(token: &str) -> Result<(), String> {
    if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "must be at least {MIN_TOKEN_CHARS} characters without spaces (`tessera gen` writes one)"
        ));
    }
    Ok(())
}

/// Checks a stored digest is 64 hex digits.
pub fn check_digest(digest: &str) -> Result<(), String> {
    if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("must be the 64-hex-digit SHA-256 of the coordinator's token".into());
    }
    Ok(())
}

/// The header value for `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Whether the `authorization` header value proves the token whose digest is `digest`.
/// Compares digests in constant time.
pub fn verifies(header: Option<&str>, digest: &str) -> bool {
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    let presented = Sha256::digest(token.as_bytes());
    let Ok(expected) = hex::decode(digest.to_ascii_lowercase()) else {
        return false;
    };
    expected.len() == presented.len()
        && expected
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
