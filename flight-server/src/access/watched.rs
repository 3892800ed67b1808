//! A small file the node re-reads when its content changes (users, approved projects), so that an
//! operator's edit — removing a user, revoking a project — takes effect with the next request.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A file, its parsed value as last read, and how it is read.
pub struct Watched<T> {
    path: PathBuf,
    load: fn(&Path) -> Result<T, String>,
    /// Used when the file no longer reads: it must deny, not allow (e.g. no users, no projects).
    fallback: fn() -> T,
    cached: Mutex<(Stamp, Arc<T>)>,
}

/// What tells that a file changed: the SHA-256 of its bytes (a modification time can stay the
/// same across an edit, e.g. `cp -p`, or within the file system's clock resolution).
type Stamp = Option<[u8; 32]>;

fn stamp(path: &Path) -> Stamp {
    use sha2::Digest;
    let bytes = std::fs::read(path).ok()?;
    Some(sha2::Sha256::digest(&bytes).into())
}

impl<T> Watched<T> {
    /// Reads `path` now (an error names the file), then whenever it changes.
    pub fn open(path: PathBuf, load: fn(&Path) -> Result<T, String>, fallback: fn() -> T) -> Result<Self, String> {
        let stamp = stamp(&path);
        let value = load(&path)?;
        Ok(Watched {
            path,
            load,
            fallback,
            cached: Mutex::new((stamp, Arc::new(value))),
        })
    }

    /// The current value, re-read if the file changed. A file that no longer reads gives the
    /// fallback (and an error in the node's log) until it is fixed.
    pub fn get(&self) -> Arc<T> {
        let stamp = stamp(&self.path);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if cached.0 != stamp {
            let value = (self.load)(&self.path).unwrap_or_else(|e| {
                tracing::error!("{e}; denying what it would allow until it is fixed");
                (self.fallback)()
            });
            *cached = (stamp, Arc::new(value));
        }
        cached.1.clone()
    }
}
