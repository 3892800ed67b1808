//! Throttled sign-in failures: after [`FREE_FAILURES`] failures in a row for one user name or from
//! one address, each further attempt must wait, doubling up to [`MAX_WAIT`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed before waits start.
pub const FREE_FAILURES: u32 = 5;

/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Most keys tracked; failures older than [`MAX_WAIT`] are forgotten first.
const MAX_KEYS: usize = 100_000;

/// Failures per key (a user name or an address).
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Throttle {
    /// How long `key` must still wait before its next attempt, if at all.
    pub fn wait(&self, key: &str) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, last) = failures.get(key)?;
        let over = count.checked_sub(FREE_FAILURES)?;
        let wait = Duration::from_secs(1u64 << over.min(16)).min(MAX_WAIT);
        wait.checked_sub(last.elapsed()).filter(|w| !w.is_zero())
    }

    /// Records a failed attempt by `key`.
    pub fn failed(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_KEYS {
            failures.retain(|_, (_, last)| last.elapsed() < MAX_WAIT);
        }
        let entry = failures.entry(key.to_string()).or_insert((0, Instant::now()));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
    }

    /// Forgets `key`'s failures after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}
