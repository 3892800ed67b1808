//! Credentials on the wire: the `authorization` header as Flight SQL clients send it — `Basic`
//! user and password (ADBC sends them on every call, and to the handshake), or the `Bearer`
//! token a node hands out after a successful handshake — and random secrets.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use sha2::{Digest, Sha256};

/// The request header carrying credentials.
pub const AUTHORIZATION: &str = "authorization";

/// Longest user name or password accepted, in bytes (longer ones are refused unread).
pub const MAX_CREDENTIAL_BYTES: usize = 1024;

/// Base64 with or without padding: Go's Flight client (under ADBC) sends Basic credentials unpadded.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What an `authorization` header holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password.
    Basic { user: String, password: String },
    /// A session token from a handshake.
    Bearer(String),
}

impl Credentials {
    /// Reads a header value; `None` for anything that is not well-formed Basic or Bearer.
    pub fn parse(header: &str) -> Option<Credentials> {
        if header.len() > 4 * MAX_CREDENTIAL_BYTES {
            return None;
        }
        let (scheme, value) = header.split_once(' ')?;
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = LENIENT.decode(value).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            (!user.is_empty() && user.len() <= MAX_CREDENTIAL_BYTES && password.len() <= MAX_CREDENTIAL_BYTES).then(
                || Credentials::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                },
            )
        } else if scheme.eq_ignore_ascii_case("bearer") && !value.is_empty() && value.len() <= MAX_CREDENTIAL_BYTES {
            Some(Credentials::Bearer(value.to_string()))
        } else {
            None
        }
    }

    /// The header value.
    pub fn header(&self) -> String {
        match self {
            Credentials::Basic { user, password } => format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))),
            Credentials::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

/// A new random secret (256 bits from the operating system, hex).
pub fn generate_token() -> String {
    use rand::TryRngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system provides random bytes");
    hex::encode(bytes)
}

/// The SHA-256 (hex) of a secret: what is kept of a session token or derived from a seed.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_authorization_headers() {
        let basic = |u: &str, p: &str| {
            Some(Credentials::Basic {
                user: u.into(),
                password: p.into(),
            })
        };
        let long = "x".repeat(MAX_CREDENTIAL_BYTES + 1);
        let long_basic = format!("Basic {}", STANDARD.encode(format!("{long}:pw")));
        let cases: Vec<(String, Option<Credentials>)> = vec![
            ("Basic YWxpY2U6czNjcmV0".into(), basic("alice", "s3cret")),
            ("basic YWxpY2U6czNjcmV0".into(), basic("alice", "s3cret")),
            // Unpadded, as Go's Flight client sends it; and padded.
            ("Basic Ym9iOnB3".into(), basic("bob", "pw")),
            ("Basic Ym9iOnB3MQ".into(), basic("bob", "pw1")),
            ("Basic Ym9iOnB3MQ==".into(), basic("bob", "pw1")),
            // The password may hold colons; the user may not.
            (format!("Basic {}", STANDARD.encode("bob:a:b")), basic("bob", "a:b")),
            ("Bearer abc123".into(), Some(Credentials::Bearer("abc123".into()))),
            ("Bearer ".into(), None),
            ("Basic !!!".into(), None),
            (format!("Basic {}", STANDARD.encode("no-colon")), None),
            (format!("Basic {}", STANDARD.encode(":pw")), None),
            (format!("Basic {}", STANDARD.encode([0xff, b':', 0xfe])), None),
            ("Digest x".into(), None),
            ("".into(), None),
            (long_basic, None),
        ];
        for (header, expected) in cases {
            assert_eq!(Credentials::parse(&header), expected, "{header:?}");
        }
        let round = Credentials::Basic {
            user: "ana".into(),
            password: "p w:1".into(),
        };
        assert_eq!(Credentials::parse(&round.header()), Some(round));
    }
}
