//! Throttled failures. Each key (a user name, an address, or both) has some free failures; after
//! them, each further attempt must wait, doubling up to [`MAX_WAIT`]. An attempt counts as a
//! failure from the moment it starts, so that attempts sent in parallel cannot all pass the check
//! before any fails; a success takes its own attempt back and nothing more, so a user's good
//! sign-ins never wipe an attacker's count. Failures are forgotten [`MAX_WAIT`] after the last one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest wait.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Most keys tracked; stale ones are forgotten first.
const MAX_KEYS: usize = 100_000;

/// A key and the failures it may have before waits start.
pub type Key = (String, u32);

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    /// Attempts turned away while waiting (not otherwise recorded).
    turned_away: u64,
}

/// Failures per key.
#[derive(Default)]
pub struct Throttle {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Entry {
    /// How long the key must still wait, with `free` failures allowed.
    fn wait(&self, free: u32) -> Option<Duration> {
        let over = self.failures.checked_sub(free)?;
        let wait = Duration::from_secs(1u64 << over.min(16)).min(MAX_WAIT);
        wait.checked_sub(self.last.elapsed()).filter(|w| !w.is_zero())
    }
}

impl Throttle {
    /// Starts an attempt by `keys`: `Err(wait)` when any key must still wait (the attempt is
    /// turned away and counted as such), else the attempt is counted as a failure until
    /// [`Throttle::succeeded`] takes it back.
    pub fn begin(&self, keys: &[Key]) -> Result<(), Duration> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_KEYS {
            entries.retain(|_, e| e.last.elapsed() < MAX_WAIT);
        }
        // Still full of recent failures: forget the oldest half rather than grow.
        if entries.len() >= MAX_KEYS {
            let mut ages = entries.values().map(|e| e.last).collect::<Vec<_>>();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            entries.retain(|_, e| e.last > cut);
        }
        let now = Instant::now();
        let mut longest = None;
        for (key, free) in keys {
            if let Some(entry) = entries.get_mut(key) {
                if entry.last.elapsed() >= MAX_WAIT {
                    entry.failures = 0;
                }
                if let Some(wait) = entry.wait(*free) {
                    entry.turned_away += 1;
                    longest = longest.max(Some(wait));
                }
            }
        }
        if let Some(wait) = longest {
            return Err(wait);
        }
        for (key, _) in keys {
            let entry = entries.entry(key.clone()).or_insert(Entry {
                failures: 0,
                last: now,
                turned_away: 0,
            });
            entry.failures = entry.failures.saturating_add(1);
            entry.last = now;
        }
        Ok(())
    }

    /// Takes back the failure [`Throttle::begin`] counted for a successful attempt (a key left
    /// with nothing to remember is dropped).
    pub fn succeeded(&self, keys: &[Key]) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (key, _) in keys {
            if let Some(entry) = entries.get_mut(key) {
                entry.failures = entry.failures.saturating_sub(1);
                if entry.failures == 0 && entry.turned_away == 0 {
                    entries.remove(key);
                }
            }
        }
    }

    /// Attempts turned away for `key` since the last call (and resets the count).
    pub fn take_turned_away(&self, key: &str) -> u64 {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get_mut(key).map_or(0, |e| std::mem::take(&mut e.turned_away))
    }
}

/// The address part of a throttle key: the IP, or for IPv6 its /64 (one site's addresses).
pub fn address_key(addr: Option<std::net::SocketAddr>) -> String {
    match addr.map(|a| a.ip()) {
        Some(std::net::IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(ip) => ip.to_string(),
        None => "unknown".into(),
    }
}
