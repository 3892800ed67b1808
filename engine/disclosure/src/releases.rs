//! The project's release log: one line per result about people that the project was given —
//! when, the query, and the sets of records it released statistics about (tables, conditions,
//! groups, each statistic's class). It holds no values and needs no trust to be asked again; it
//! counts the distinct values released against the project's budget.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One released result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// UTC time, RFC 3339.
    pub time: String,
    pub query_id: String,
    /// The query as the researcher wrote it.
    pub sql: String,
    /// The sets of records it released statistics about: each the fragment's tables, filter and
    /// grouping, with the statistic's own condition.
    pub sets: Vec<String>,
    /// The values it released, by identity (a set of records and a cell's labels, hashed).
    pub values: Vec<String>,
}

/// A project's release log (JSON lines).
#[derive(Debug, Clone)]
pub struct ReleaseLog {
    path: PathBuf,
}

impl ReleaseLog {
    pub fn new(path: PathBuf) -> ReleaseLog {
        ReleaseLog { path }
    }

    /// Every value the project has been given, by identity (none when the log does not exist yet).
    pub fn released_values(&self) -> Result<BTreeSet<String>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(format!("release log {}: {e}", self.path.display())),
        };
        let mut sets = BTreeSet::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let release = serde_json::from_str::<Release>(line)
                .map_err(|e| format!("release log {}: line {}: {e}", self.path.display(), i + 1))?;
            sets.extend(release.values);
        }
        Ok(sets)
    }

    /// Appends one release, durably.
    pub fn append(&self, release: &Release) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("release log {}: {e}", self.path.display());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut line = serde_json::to_string(release).map_err(|e| e.to_string())?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(fail)?;
        file.write_all(line.as_bytes()).map_err(fail)?;
        file.sync_data().map_err(fail)
    }
}
