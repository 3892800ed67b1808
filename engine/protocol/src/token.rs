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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_proves_only_its_own_token() {
        let token = generate_token();
        let digest = token_digest(&token);
        let other = generate_token();
        // (authorization header, proves the token)
        let cases = [
            (Some(bearer(&token)), true),
            (Some(bearer(&other)), false),
            (Some(token.clone()), false),
            (Some(format!("bearer {token}")), false),
            (Some(format!("Bearer {token} ")), false),
            (Some("Bearer ".to_string()), false),
            (None, false),
        ];
        for (header, proves) in cases {
            assert_eq!(verifies(header.as_deref(), &digest), proves, "{header:?}");
        }
        assert!(verifies(Some(&bearer(&token)), &digest.to_ascii_uppercase()));
        assert!(!verifies(Some(&bearer(&token)), "not hex"));
    }

    #[test]
    fn tokens_and_digests_are_checked_for_shape() {
        assert_eq!(generate_token().len(), 64);
        assert_ne!(generate_token(), generate_token());
        let short = "a".repeat(MIN_TOKEN_CHARS - 1);
        let spaced = format!("{} b", "a".repeat(MIN_TOKEN_CHARS));
        for (token, ok) in [(generate_token(), true), (short, false), (spaced, false)] {
            assert_eq!(check_token(&token).is_ok(), ok, "{token}");
        }
        let digest = token_digest("x");
        for (digest, ok) in [
            (digest.clone(), true),
            (digest[1..].to_string(), false),
            ("g".repeat(64), false),
        ] {
            assert_eq!(check_digest(&digest).is_ok(), ok, "{digest}");
        }
    }
}
