//! Session tokens handed out by a successful password sign-in: kept as SHA-256 digests, each for
//! one user and the password hash they signed in with (a new password ends old sessions), valid
//! for a fixed time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_protocol::credentials::token_digest;

/// How long a handshake's token is valid.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Most sessions one user may hold; their oldest goes first.
pub const MAX_SESSIONS_PER_USER: usize = 32;

/// Most sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    user: String,
    /// The user's password hash at sign-in.
    hash: String,
    expires: Instant,
}

/// Live sessions.
#[derive(Default)]
pub struct Sessions {
    by_digest: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A new token for `user`, who signed in against password hash `hash`.
    pub fn open(&self, user: &str, hash: &str) -> String {
        let token = super::random_secret();
        let mut sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        let oldest_of = |sessions: &HashMap<String, Session>, user: Option<&str>| {
            sessions
                .iter()
                .filter(|(_, s)| user.is_none_or(|u| s.user == u))
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        };
        if sessions.values().filter(|s| s.user == user).count() >= MAX_SESSIONS_PER_USER {
            if let Some(oldest) = oldest_of(&sessions, Some(user)) {
                sessions.remove(&oldest);
            }
        }
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = oldest_of(&sessions, None) {
                sessions.remove(&oldest);
            }
        }
        let session = Session {
            user: user.to_string(),
            hash: hash.to_string(),
            expires: now + SESSION_LIFETIME,
        };
        sessions.insert(token_digest(&token), session);
        token
    }

    /// The user a live token belongs to, with the password hash they signed in with.
    pub fn user(&self, token: &str) -> Option<(String, String)> {
        let sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(&token_digest(token))
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.user.clone(), s.hash.clone()))
    }

    /// Ends the session of `token`.
    pub fn close(&self, token: &str) {
        let mut sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(&token_digest(token));
    }
}
