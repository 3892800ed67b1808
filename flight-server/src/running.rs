//! How many questions each user has running, so that one user cannot take every worker.

use std::collections::HashMap;
use std::sync::Mutex;

/// Questions running per user, at most `max` each.
pub struct PerUser {
    running: Mutex<HashMap<String, usize>>,
    max: usize,
}

/// One running question of a user, counted while it lives.
pub struct Running<'a> {
    of: &'a PerUser,
    user: String,
}

impl PerUser {
    /// At most `max` questions running per user.
    pub fn new(max: usize) -> PerUser {
        PerUser {
            running: Mutex::default(),
            max,
        }
    }

    /// The most questions one user may have running.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Counts one more question of `user`, unless they already have [`max`](Self::max) running.
    pub fn start(&self, user: &str) -> Option<Running<'_>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let n = running.entry(user.to_string()).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Running {
            of: self,
            user: user.to_string(),
        })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = self.of.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.user);
            }
        }
    }
}
