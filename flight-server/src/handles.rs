//! Values kept for the user who made them under random handles — answers waiting for their
//! `DoGet`, prepared statements — bounded per user and in all (the oldest go first), for a
//! limited time. A handle is a capability only together with its owner: another user presenting
//! it finds nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Entry<T> {
    owner: String,
    touched: Instant,
    value: T,
}

/// Values under handles.
pub struct Handles<T> {
    entries: Mutex<HashMap<String, Entry<T>>>,
    /// Starts every handle, e.g. `analyst:`.
    prefix: &'static str,
    lifetime: Duration,
    max: usize,
    max_per_owner: usize,
}

impl<T> Handles<T> {
    /// Handles starting with `prefix`, each kept `lifetime` after its last use; at most `max` in
    /// all and `max_per_owner` per user.
    pub fn new(prefix: &'static str, lifetime: Duration, max: usize, max_per_owner: usize) -> Handles<T> {
        Handles {
            entries: Mutex::default(),
            prefix,
            lifetime,
            max,
            max_per_owner,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `value` for `owner`; returns its new handle. One user's values never push out another's.
    pub fn insert(&self, owner: &str, value: T) -> String {
        let handle = format!("{}{}", self.prefix, crate::access::random_secret());
        let mut entries = self.lock();
        entries.retain(|_, e| e.touched.elapsed() < self.lifetime);
        let oldest = |entries: &HashMap<String, Entry<T>>, owner: Option<&str>| {
            entries
                .iter()
                .filter(|(_, e)| owner.is_none_or(|o| e.owner == o))
                .min_by_key(|(_, e)| e.touched)
                .map(|(k, _)| k.clone())
        };
        if entries.values().filter(|e| e.owner == owner).count() >= self.max_per_owner {
            if let Some(key) = oldest(&entries, Some(owner)) {
                entries.remove(&key);
            }
        }
        if entries.len() >= self.max {
            if let Some(key) = oldest(&entries, None) {
                entries.remove(&key);
            }
        }
        let entry = Entry {
            owner: owner.to_string(),
            touched: Instant::now(),
            value,
        };
        entries.insert(handle.clone(), entry);
        handle
    }

    /// The live entry under `handle`, if it is `owner`'s.
    fn find<'a>(
        &self,
        entries: &'a mut HashMap<String, Entry<T>>,
        owner: &str,
        handle: &[u8],
    ) -> Option<&'a mut Entry<T>> {
        let handle = std::str::from_utf8(handle).ok()?;
        entries
            .get_mut(handle)
            .filter(|e| e.owner == owner && e.touched.elapsed() < self.lifetime)
    }

    /// Removes and returns the value under `handle`, if it is `owner`'s.
    pub fn take(&self, owner: &str, handle: &[u8]) -> Option<T> {
        let mut entries = self.lock();
        self.find(&mut entries, owner, handle)?;
        let key = std::str::from_utf8(handle).ok()?;
        entries.remove(key).map(|e| e.value)
    }

    /// Changes the value under `handle` with `change`, if it is `owner`'s; returns what `change` returned.
    pub fn update<R>(&self, owner: &str, handle: &[u8], change: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut entries = self.lock();
        let entry = self.find(&mut entries, owner, handle)?;
        entry.touched = Instant::now();
        Some(change(&mut entry.value))
    }
}
