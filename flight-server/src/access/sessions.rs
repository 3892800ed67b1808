//! Session tokens handed out by a successful handshake: kept as SHA-256 digests, each for one
//! user, valid for a fixed time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_protocol::credentials::token_digest;

/// How long a handshake's token is valid.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// Most sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// Live sessions.
#[derive(Default)]
pub struct Sessions {
    by_digest: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    /// A new token for `user`.
    pub fn open(&self, user: &str) -> String {
        let token = super::random_secret();
        let mut sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, (_, expires)| *expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, (_, e))| *e).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(token_digest(&token), (user.to_string(), now + SESSION_LIFETIME));
        token
    }

    /// The user a live token belongs to.
    pub fn user(&self, token: &str) -> Option<String> {
        let sessions = self.by_digest.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(&token_digest(token))
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(user, _)| user.clone())
    }
}
