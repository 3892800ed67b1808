//! `tessera audit verify FILE` and `tessera audit show FILE [--project P] [--since DATE]`.

use std::path::Path;

use tessera_node::audit::{is_invisible, verify as verify_log, AuditError};
use tessera_node::audit_summary::{read_entries, summarise, Filter};

use crate::exit::{Failure, Outcome};

pub fn verify(file: &Path) -> Outcome {
    match verify_log(file) {
        Ok(v) => {
            println!(
                "{}: intact, {} entries; last line SHA-256 {}",
                file.display(),
                v.lines,
                v.head_hash
            );
            Ok(())
        }
        Err(e @ AuditError::Tampered { .. }) => Err(Failure::query(format!("audit log tampered: {e}"))),
        Err(e) => Err(Failure::connection(e)),
    }
}

/// Most characters of SQL and reasons shown per line.
const SHOWN_CHARS: usize = 120;

/// `text` on one line, cut to [`SHOWN_CHARS`], with every control character and text-reordering
/// mark shown as `\u{…}` so that nothing in a log can drive the reader's terminal.
fn cut(text: &str) -> String {
    let one_line = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| match is_invisible(c) {
            true => c.escape_unicode().to_string(),
            false => c.to_string(),
        })
        .collect::<String>();
    match one_line.chars().count() > SHOWN_CHARS {
        true => format!("{}…", one_line.chars().take(SHOWN_CHARS).collect::<String>()),
        false => one_line,
    }
}

/// Summarises who asked what: per caller and project, how many requests were allowed, refused
/// and failed; then every refused or failed request. A broken chain is reported first, and the
/// command then exits 1.
pub fn show(file: &Path, filter: &Filter) -> Outcome {
    let chain = verify_log(file);
    match &chain {
        Ok(v) => println!("{}: intact, {} entries", file.display(), v.lines),
        Err(AuditError::Io { .. }) => return Err(Failure::connection(chain.unwrap_err())),
        Err(e) => println!("WARNING: {e}\n(the summary below reads the lines as they are)"),
    }
    let entries = read_entries(file).map_err(Failure::query)?;
    let (summary, unanswered) = summarise(&entries, filter);
    if summary.is_empty() {
        println!("no requests match");
    } else {
        println!(
            "\n{:<15} {:<44} {:<24} {:<20} {:>7} {:>7} {:>6}  first … last",
            "role", "principal", "on behalf of", "project", "allowed", "refused", "errors"
        );
        for ((role, principal, requester, project), t) in &summary {
            let role = cut(role);
            println!(
                "{role:<15} {:<44} {:<24} {:<20} {:>7} {:>7} {:>6}  {} … {}",
                cut(principal),
                cut(requester),
                cut(project),
                t.allowed,
                t.refused,
                t.errors,
                t.first.get(..16).unwrap_or(&t.first),
                t.last.get(..16).unwrap_or(&t.last)
            );
        }
    }
    if !unanswered.is_empty() {
        println!("\nRefused or failed:");
        for e in unanswered {
            println!(
                "  {} {} {} ({}) {}: {}\n      {}",
                e.time.get(..19).unwrap_or(&e.time),
                cut(&e.role),
                cut(&e.principal),
                cut(&e.project),
                cut(&e.call),
                cut(e.reason.as_deref().unwrap_or("")),
                cut(&e.sql)
            );
        }
    }
    match chain {
        Err(e) => Err(Failure::query(format!("audit log tampered: {e}"))),
        Ok(_) => Ok(()),
    }
}
