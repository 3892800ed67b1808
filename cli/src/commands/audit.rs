//! `tessera audit verify FILE` and `tessera audit show FILE [--project P] [--since DATE] [--ledger FILE]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tessera_privacy::Rho;

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

/// The ledger `audit show` reads: the one named, else `privacy-ledger.jsonl` beside the log if
/// there is one (a trust in `sdc` mode keeps none).
fn ledger_of(log: &Path, named: Option<&Path>) -> Result<Option<PathBuf>, Failure> {
    match named {
        Some(path) if !path.exists() => Err(Failure::query(format!(
            "{}: no such privacy ledger (node.toml's [privacy] ledger names it)",
            path.display()
        ))),
        Some(path) => Ok(Some(path.to_path_buf())),
        None => {
            let default = tessera_node::node::dp::config::PrivacyConfig::default().ledger;
            let beside = log.with_file_name(default);
            Ok(beside.exists().then_some(beside))
        }
    }
}

/// What each project, and each requester in it, has spent of this trust's privacy budget.
fn show_spending(ledger: &Path, filter: &Filter) -> Outcome {
    let entries = tessera_privacy::spending::read(ledger).map_err(Failure::query)?;
    let kept = entries
        .into_iter()
        .filter(|e| filter.keeps_line(&e.project, &e.time))
        .collect::<Vec<_>>();
    let spending = tessera_privacy::spending::summarise(&kept);
    println!(
        "\nPrivacy budget spent ({}; ρ, zero-concentrated differential privacy):",
        ledger.display()
    );
    if spending.is_empty() {
        println!("  nothing spent");
        return Ok(());
    }
    println!(
        "{:<20} {:<24} {:>9} {:>7} {:>9}",
        "project", "on behalf of", "questions", "refunds", "ρ spent"
    );
    let mut totals: BTreeMap<&str, Rho> = BTreeMap::new();
    for ((project, requester), spent) in &spending {
        println!(
            "{:<20} {:<24} {:>9} {:>7} {:>9}",
            cut(project),
            cut(requester),
            spent.questions,
            spent.refunds,
            spent.rho.to_string()
        );
        let total = totals.entry(project).or_default();
        *total = total.plus(spent.rho);
    }
    for (project, total) in totals {
        println!("  project {}: ρ = {total} spent in all", cut(project));
    }
    Ok(())
}

/// Summarises who asked what: per caller and project, how many requests were allowed, refused
/// and failed; what each project spent of the privacy budget (from `ledger`, or the ledger beside
/// the log); then every refused or failed request. A broken chain is reported first, and the
/// command then exits 1.
pub fn show(file: &Path, ledger: Option<&Path>, filter: &Filter) -> Outcome {
    let ledger = ledger_of(file, ledger)?;
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
    if let Some(ledger) = ledger {
        // A ledger that cannot be read is reported; the audit log's own summary still follows.
        if let Err(e) = show_spending(&ledger, filter) {
            println!("\nWARNING: the privacy ledger could not be read: {}", e.message);
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
