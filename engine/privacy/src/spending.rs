//! Who spent what of a trust's privacy budget, read from its ledger file without touching it (a
//! running node may be appending): for `tessera audit show`, the trust's own view.

use std::collections::BTreeMap;
use std::path::Path;

use crate::accounting::Rho;
use crate::ledger::{Entry, Event, LedgerError};

/// What one requester spent in one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spent {
    /// Reservations less refunds.
    pub rho: Rho,
    /// Questions charged (a refunded one is not counted).
    pub questions: u64,
    /// Reservations given back because their question never ran.
    pub refunds: u64,
}

/// (project, requester) → what they spent.
pub type Spending = BTreeMap<(String, String), Spent>;

/// The complete lines of the ledger at `path` (none if there is no file). A last line without its
/// newline is being written, or was torn by a crash: it is not read (the node itself drops a torn
/// line when it starts).
pub fn read(path: &Path) -> Result<Vec<Entry>, LedgerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LedgerError::Io(format!("{}: {e}", path.display()))),
    };
    text.split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line.trim_end()).map_err(|e| {
                LedgerError::Io(format!(
                    "{}: line {} is not a ledger entry ({e})",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Sums `entries` by project and requester, as the node counts them: a refund gives back the
/// reservation of its query id (charged to whoever reserved it), and a query id charged twice
/// counts once.
pub fn summarise(entries: &[Entry]) -> Spending {
    let mut reserved: BTreeMap<(&str, &str), (&str, Rho)> = BTreeMap::new();
    let mut spending = Spending::new();
    for entry in entries {
        let key = (entry.project.as_str(), entry.query_id.as_str());
        match entry.event {
            Event::Reserve => {
                if reserved.contains_key(&key) {
                    continue;
                }
                reserved.insert(key, (entry.requester.as_str(), entry.rho));
                let spent = spending
                    .entry((entry.project.clone(), entry.requester.clone()))
                    .or_default();
                spent.rho = spent.rho.plus(entry.rho);
                spent.questions += 1;
            }
            Event::Refund => {
                let Some((requester, rho)) = reserved.remove(&key) else {
                    continue;
                };
                let spent = spending
                    .entry((entry.project.clone(), requester.to_string()))
                    .or_default();
                spent.rho = spent.rho.minus(rho);
                spent.questions = spent.questions.saturating_sub(1);
                spent.refunds += 1;
            }
        }
    }
    spending
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::BudgetLedger;

    const BUDGET: Rho = Rho(1_000_000);

    #[test]
    fn spends_are_summed_per_project_and_requester_as_the_node_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("privacy-ledger.jsonl");
        let ledger = BudgetLedger::open(&path).unwrap();
        // (project, query id, requester, spend, refunded?)
        let cases = [
            ("p", "q1", "ana", 50_000, false),
            ("p", "q2", "ana", 100_000, false),
            ("p", "q3", "bo", 50_000, false),
            ("p", "q4", "bo", 250_000, true),
            ("r", "q1", "ana", 50_000, false),
            // The same query id charged again (a retry) is one charge.
            ("p", "q1", "ana", 50_000, false),
        ];
        for (project, id, requester, rho, refunded) in cases {
            ledger.reserve(project, id, requester, Rho(rho), BUDGET).unwrap();
            if refunded {
                ledger.refund(project, id, "coordinator").unwrap();
            }
        }
        let spending = summarise(&read(&path).unwrap());
        let expect = |rho, questions, refunds| Spent {
            rho: Rho(rho),
            questions,
            refunds,
        };
        assert_eq!(
            spending,
            Spending::from([
                (("p".into(), "ana".into()), expect(150_000, 2, 0)),
                (("p".into(), "bo".into()), expect(50_000, 1, 1)),
                (("r".into(), "ana".into()), expect(50_000, 1, 0)),
            ])
        );
        // The node's own totals agree.
        assert_eq!(ledger.account("p").spent, Rho(200_000));
    }

    #[test]
    fn a_line_being_written_is_not_read_and_the_file_is_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("privacy-ledger.jsonl");
        let ledger = BudgetLedger::open(&path).unwrap();
        ledger.reserve("p", "q1", "ana", Rho(50_000), BUDGET).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"time\":\"2026-");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read(&path).unwrap().len(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert!(read(&dir.path().join("none.jsonl")).unwrap().is_empty());
    }
}
