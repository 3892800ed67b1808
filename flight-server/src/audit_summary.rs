//! `tessera audit show`: who asked what, allowed and refused, for a trust's information
//! governance lead.

use std::collections::BTreeMap;
use std::path::Path;

use crate::audit::{AuditEntry, Decision};

/// Which lines to summarise.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this project.
    pub project: Option<String>,
    /// Only lines on or after this day (UTC, `YYYY-MM-DD`).
    pub since: Option<chrono::NaiveDate>,
}

impl Filter {
    fn keeps(&self, entry: &AuditEntry) -> bool {
        self.keeps_line(&entry.project, &entry.time)
    }

    /// Whether a line of `project` written at `time` (RFC 3339) is kept: an audit line or a
    /// privacy ledger line alike.
    pub fn keeps_line(&self, project: &str, time: &str) -> bool {
        let day = time
            .get(..10)
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
        self.project.as_ref().is_none_or(|p| p == project)
            && self.since.is_none_or(|since| day.is_some_and(|d| d >= since))
    }
}

/// Requests by one caller for one project.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub allowed: u64,
    pub refused: u64,
    pub errors: u64,
    pub first: String,
    pub last: String,
}

/// Who asked (role, authenticated principal, on whose behalf, project) → what happened.
pub type Summary = BTreeMap<(String, String, String, String), Tally>;

/// Reads the log's lines (the chain is checked separately, by [`crate::audit::verify`]).
pub fn read_entries(log: &Path) -> Result<Vec<AuditEntry>, String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{}: line {}: not an audit entry ({e})", log.display(), i + 1))
        })
        .collect()
}

/// Tallies the requests `filter` keeps (not the fragments an analyst's question ran, which have
/// lines of their own); also returns the refused and failed ones, to list.
pub fn summarise<'a>(entries: &'a [AuditEntry], filter: &Filter) -> (Summary, Vec<&'a AuditEntry>) {
    let mut summary = Summary::new();
    let mut unanswered = Vec::new();
    let requests = entries
        .iter()
        .filter(|e| e.call != crate::node::PROTECTED_FRAGMENT && filter.keeps(e));
    for entry in requests {
        let key = (
            entry.role.clone(),
            entry.principal.clone(),
            entry.requester.clone(),
            entry.project.clone(),
        );
        let tally = summary.entry(key).or_default();
        match entry.decision {
            Decision::Allowed => tally.allowed += 1,
            Decision::Refused => tally.refused += 1,
            Decision::Error => tally.errors += 1,
        }
        if tally.first.is_empty() {
            tally.first = entry.time.clone();
        }
        tally.last = entry.time.clone();
        if entry.decision != Decision::Allowed {
            unanswered.push(entry);
        }
    }
    (summary, unanswered)
}
