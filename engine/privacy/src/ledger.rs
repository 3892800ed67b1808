//! The privacy budget a trust keeps for each project, at its own node.
//!
//! A question's spend is **reserved before it runs**: the reservation is written and flushed to
//! disk (one JSON line, `fsync`) before any record is read, under one lock, so two concurrent
//! questions cannot together pass the budget and a node killed at any moment has either
//! written the spend or not started the question. A reservation is final once the question
//! runs: whether it then answered or failed, the spend stays (a failure is an outcome too).
//! Only a question that never ran may be refunded (another trust refused it first).
//!
//! Reserving twice under one query id charges once, so a coordinator that retries after a
//! lost reply, or a node restarted mid-question, never double-charges.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::accounting::Rho;

/// One line of the ledger file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// UTC time, RFC 3339.
    pub time: String,
    pub project: String,
    pub query_id: String,
    /// Who asked (as the coordinator authenticated them).
    pub requester: String,
    pub event: Event,
    /// The spend reserved or refunded, in millionths of ρ.
    pub rho: Rho,
}

impl Entry {
    /// A line stamped with the current time.
    fn now(project: &str, query_id: &str, requester: &str, event: Event, rho: Rho) -> Entry {
        Entry {
            time: chrono::Utc::now().to_rfc3339(),
            project: project.to_string(),
            query_id: query_id.to_string(),
            requester: requester.to_string(),
            event,
            rho,
        }
    }
}

/// What a ledger line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// A question's spend, charged before it ran.
    Reserve,
    /// A reservation given back because its question never ran.
    Refund,
}

/// A project's account at this trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    /// Spent so far (reservations less refunds).
    pub spent: Rho,
    /// Questions charged.
    pub questions: u64,
}

/// A reservation made, or found made before under the same query id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    /// The spend charged for the question.
    pub rho: Rho,
    /// `false` when the query id was charged before (nothing was charged now).
    pub new: bool,
}

/// Why a spend was not reserved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("project {project}'s privacy budget at this trust would be overspent: it has spent or reserved ρ = {spent} of ρ = {budget}, and this question asks for ρ = {asked} (ρ = {left} is left)")]
    Overspend {
        project: String,
        spent: Rho,
        budget: Rho,
        asked: Rho,
        left: Rho,
    },
    #[error("a question may spend at most ρ = {cap} at this trust in all its parts; its other parts have reserved ρ = {reserved} and this one asks for ρ = {asked}")]
    QuestionOverspend { cap: Rho, reserved: Rho, asked: Rho },
    #[error("privacy ledger {0}")]
    Io(String),
}

/// What a reservation must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The project's budget at this trust.
    pub budget: Rho,
    /// The most one question may spend, all its parts together: the reservations whose query
    /// ids share the part before the last `#` (`Q#a`, `Q#b` are parts of question `Q`). `None`:
    /// no cap.
    pub per_question: Option<Rho>,
}

impl From<Rho> for Limits {
    fn from(budget: Rho) -> Limits {
        Limits {
            budget,
            per_question: None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    accounts: BTreeMap<String, Account>,
    /// Live reservations by (project, query id): their spend.
    reserved: BTreeMap<(String, String), Rho>,
}

/// A trust's privacy ledger: one JSON-lines file, replayed at start.
#[derive(Debug)]
pub struct BudgetLedger {
    path: PathBuf,
    state: Mutex<State>,
}

impl BudgetLedger {
    /// Opens (or starts) the ledger at `path`. A last line cut short by a crash is ignored (its
    /// question was never told it could run); any other unreadable line is an error.
    pub fn open(path: impl Into<PathBuf>) -> Result<BudgetLedger, LedgerError> {
        let path = path.into();
        let mut state = State::default();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io(&path, e)),
        };
        let lines = text.split_inclusive('\n').collect::<Vec<_>>();
        for (i, line) in lines.iter().enumerate() {
            if !line.ends_with('\n') {
                // Only the last line can lack its newline: torn by a crash, dropped below.
                break;
            }
            let entry = serde_json::from_str::<Entry>(line.trim_end()).map_err(|e| {
                LedgerError::Io(format!(
                    "{}: line {} is not a ledger entry ({e}); the ledger must not be edited",
                    path.display(),
                    i + 1
                ))
            })?;
            state.apply(&entry);
        }
        if lines.last().is_some_and(|l| !l.ends_with('\n')) {
            // Cut the torn tail so the next line starts on a line of its own.
            let keep = text.len() - lines.last().map_or(0, |l| l.len());
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io(&path, e))?;
            file.set_len(keep as u64).map_err(|e| io(&path, e))?;
            file.sync_all().map_err(|e| io(&path, e))?;
        }
        Ok(BudgetLedger {
            path,
            state: Mutex::new(state),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `project`'s account.
    pub fn account(&self, project: &str) -> Account {
        self.lock().accounts.get(project).copied().unwrap_or_default()
    }

    /// Every project's account.
    pub fn accounts(&self) -> BTreeMap<String, Account> {
        self.lock().accounts.clone()
    }

    /// Charges `rho` to `project` for question `query_id`, durably, unless that would take the
    /// project past its budget or the question past its cap (`limits`, or a bare budget).
    /// Charging a query id already charged returns its first charge.
    pub fn reserve(
        &self,
        project: &str,
        query_id: &str,
        requester: &str,
        rho: Rho,
        limits: impl Into<Limits>,
    ) -> Result<Reserved, LedgerError> {
        let Limits { budget, per_question } = limits.into();
        let mut state = self.lock();
        let key = (project.to_string(), query_id.to_string());
        if let Some(charged) = state.reserved.get(&key) {
            return Ok(Reserved {
                rho: *charged,
                new: false,
            });
        }
        if let Some(cap) = per_question {
            let reserved = state.question_reserved(project, query_id);
            if reserved.plus(rho) > cap {
                return Err(LedgerError::QuestionOverspend {
                    cap,
                    reserved,
                    asked: rho,
                });
            }
        }
        let account = state.accounts.get(project).copied().unwrap_or_default();
        let after = account.spent.plus(rho);
        if after > budget {
            return Err(LedgerError::Overspend {
                project: project.to_string(),
                spent: account.spent,
                budget,
                asked: rho,
                left: budget.minus(account.spent),
            });
        }
        self.write(
            &mut state,
            Entry::now(project, query_id, requester, Event::Reserve, rho),
        )?;
        Ok(Reserved { rho, new: true })
    }

    /// Gives back the reservation of `query_id`, whose question never ran. No-op if none.
    pub fn refund(&self, project: &str, query_id: &str, requester: &str) -> Result<(), LedgerError> {
        let mut state = self.lock();
        let Some(rho) = state
            .reserved
            .get(&(project.to_string(), query_id.to_string()))
            .copied()
        else {
            return Ok(());
        };
        self.write(&mut state, Entry::now(project, query_id, requester, Event::Refund, rho))
    }

    /// Every line, for `tessera audit` and tests.
    pub fn entries(&self) -> Result<Vec<Entry>, LedgerError> {
        let _state = self.lock();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&self.path, e)),
        };
        text.lines()
            .map(|l| serde_json::from_str(l).map_err(|e| LedgerError::Io(format!("{}: {e}", self.path.display()))))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends `entry` durably, then counts it (under the caller's lock).
    fn write(&self, state: &mut State, entry: Entry) -> Result<(), LedgerError> {
        self.append(&entry)?;
        state.apply(&entry);
        Ok(())
    }

    fn append(&self, entry: &Entry) -> Result<(), LedgerError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(&self.path, e))?;
        }
        let mut line = serde_json::to_string(entry).map_err(|e| LedgerError::Io(e.to_string()))?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| io(&self.path, e))?;
        file.write_all(line.as_bytes()).map_err(|e| io(&self.path, e))?;
        file.sync_data().map_err(|e| io(&self.path, e))
    }
}

impl State {
    /// What the other parts of `query_id`'s question (ids with the same part before the last `#`) have
    /// reserved in `project` and not given back.
    fn question_reserved(&self, project: &str, query_id: &str) -> Rho {
        let question = match query_id.rsplit_once('#') {
            Some((question, _)) => format!("{question}#"),
            None => return Rho(0),
        };
        self.reserved
            .range((project.to_string(), question.clone())..)
            .take_while(|((p, id), _)| p == project && id.starts_with(&question))
            .fold(Rho(0), |sum, (_, rho)| sum.plus(*rho))
    }

    fn apply(&mut self, entry: &Entry) {
        let key = (entry.project.clone(), entry.query_id.clone());
        let account = self.accounts.entry(entry.project.clone()).or_default();
        match entry.event {
            Event::Reserve => {
                if self.reserved.insert(key, entry.rho).is_none() {
                    account.spent = account.spent.plus(entry.rho);
                    account.questions += 1;
                }
            }
            Event::Refund => {
                if let Some(rho) = self.reserved.remove(&key) {
                    account.spent = account.spent.minus(rho);
                    account.questions = account.questions.saturating_sub(1);
                }
            }
        }
    }
}

fn io(path: &Path, e: std::io::Error) -> LedgerError {
    LedgerError::Io(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: Rho = Rho(1_000_000);

    fn ledger() -> (tempfile::TempDir, BudgetLedger) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = BudgetLedger::open(dir.path().join("privacy-ledger.jsonl")).unwrap();
        (dir, ledger)
    }

    #[test]
    fn the_parts_of_one_question_spend_at_most_its_cap_together() {
        let (_dir, ledger) = ledger();
        let limits = Limits {
            budget: BUDGET,
            per_question: Some(Rho(250_000)),
        };
        // (query id, spend, accepted): parts of q1 share its cap; q2 and a bare id have their own.
        let cases = [
            ("q1#a", 100_000, true),
            ("q1#b", 100_000, true),
            ("q1#c", 100_000, false),
            ("q1#d", 50_000, true),
            ("q2#a", 250_000, true),
            ("q10#a", 250_000, true),
            ("bare", 250_000, true),
        ];
        for (id, rho, accepted) in cases {
            let outcome = ledger.reserve("p", id, "ana", Rho(rho), limits);
            match accepted {
                true => assert!(outcome.is_ok(), "{id}: {outcome:?}"),
                false => assert_eq!(
                    outcome,
                    Err(LedgerError::QuestionOverspend {
                        cap: Rho(250_000),
                        reserved: Rho(200_000),
                        asked: Rho(100_000)
                    }),
                    "{id}"
                ),
            }
        }
        // A part given back frees its share of the cap.
        ledger.refund("p", "q2#a", "ana").unwrap();
        assert!(ledger.reserve("p", "q2#b", "ana", Rho(250_000), limits).is_ok());
        // Another project's parts of a question with the same id are its own.
        assert!(ledger.reserve("r", "q1#a", "ana", Rho(250_000), limits).is_ok());
    }

    #[test]
    fn spends_add_up_and_an_overspend_is_refused() {
        let (_dir, ledger) = ledger();
        for i in 0..4 {
            ledger
                .reserve("p", &format!("q{i}"), "ana", Rho(250_000), BUDGET)
                .unwrap();
        }
        assert_eq!(
            ledger.account("p"),
            Account {
                spent: BUDGET,
                questions: 4
            }
        );
        let refused = ledger.reserve("p", "q4", "ana", Rho(1), BUDGET).unwrap_err();
        assert!(
            matches!(refused, LedgerError::Overspend { left: Rho(0), .. }),
            "{refused}"
        );
        assert!(refused.to_string().contains("ρ = 1 of ρ = 1"), "{refused}");
        // Another project's budget is its own.
        ledger.reserve("other", "q0", "ana", Rho(500_000), BUDGET).unwrap();
        assert_eq!(ledger.account("other").spent, Rho(500_000));
    }

    #[test]
    fn the_same_question_is_charged_once() {
        let (_dir, ledger) = ledger();
        let first = ledger.reserve("p", "q", "ana", Rho(300_000), BUDGET);
        assert_eq!(
            first,
            Ok(Reserved {
                rho: Rho(300_000),
                new: true
            })
        );
        let again = ledger.reserve("p", "q", "ana", Rho(300_000), BUDGET);
        assert_eq!(
            again,
            Ok(Reserved {
                rho: Rho(300_000),
                new: false
            })
        );
        assert_eq!(ledger.account("p").spent, Rho(300_000));
        // The same id in another project is another question.
        ledger.reserve("p2", "q", "ana", Rho(300_000), BUDGET).unwrap();
        assert_eq!(ledger.account("p2").spent, Rho(300_000));
    }

    #[test]
    fn a_refund_gives_back_only_what_was_reserved() {
        let (_dir, ledger) = ledger();
        ledger.reserve("p", "q", "ana", Rho(300_000), BUDGET).unwrap();
        ledger.refund("p", "q", "ana").unwrap();
        ledger.refund("p", "q", "ana").unwrap();
        ledger.refund("p", "never", "ana").unwrap();
        assert_eq!(ledger.account("p").spent, Rho(0));
        assert_eq!(ledger.entries().unwrap().len(), 2);
    }

    #[test]
    fn the_ledger_survives_a_restart_and_a_torn_last_line() {
        let (dir, ledger) = ledger();
        ledger.reserve("p", "q1", "ana", Rho(200_000), BUDGET).unwrap();
        ledger.reserve("p", "q2", "ana", Rho(300_000), BUDGET).unwrap();
        ledger.refund("p", "q2", "ana").unwrap();
        let path = ledger.path().to_path_buf();
        drop(ledger);
        // A crash mid-write leaves half a line.
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"time":"2026-12-07T00:00:00Z","project":"p","query_id":"q3","#)
            .unwrap();
        drop(file);
        let reopened = BudgetLedger::open(&path).unwrap();
        assert_eq!(
            reopened.account("p"),
            Account {
                spent: Rho(200_000),
                questions: 1
            }
        );
        // Charging q1 again is free; new questions append cleanly after the cut line.
        reopened.reserve("p", "q1", "ana", Rho(200_000), BUDGET).unwrap();
        reopened.reserve("p", "q4", "ana", Rho(100_000), BUDGET).unwrap();
        drop(reopened);
        let again = BudgetLedger::open(dir.path().join("privacy-ledger.jsonl")).unwrap();
        assert_eq!(again.account("p").spent, Rho(300_000));
    }

    #[test]
    fn an_edited_line_is_an_error() {
        let (_dir, ledger) = ledger();
        ledger.reserve("p", "q1", "ana", Rho(200_000), BUDGET).unwrap();
        ledger.reserve("p", "q2", "ana", Rho(200_000), BUDGET).unwrap();
        let path = ledger.path().to_path_buf();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replacen("\"reserve\"", "\"spent\"", 1)).unwrap();
        let error = BudgetLedger::open(&path).unwrap_err();
        assert!(error.to_string().contains("line 1 is not a ledger entry"), "{error}");
    }

    #[test]
    fn concurrent_questions_cannot_overspend() {
        let (_dir, ledger) = ledger();
        let ledger = std::sync::Arc::new(ledger);
        let threads = (0..16)
            .map(|i| {
                let ledger = ledger.clone();
                std::thread::spawn(move || {
                    ledger
                        .reserve("p", &format!("q{i}"), "ana", Rho(150_000), BUDGET)
                        .is_ok()
                })
            })
            .collect::<Vec<_>>();
        let granted = threads.into_iter().map(|t| t.join().unwrap()).filter(|&ok| ok).count();
        // 6 × 0.15 = 0.9 fits in 1; a seventh would not.
        assert_eq!(granted, 6);
        assert_eq!(ledger.account("p").spent, Rho(900_000));
        let reopened = BudgetLedger::open(ledger.path()).unwrap();
        assert_eq!(reopened.account("p").spent, Rho(900_000));
    }

    /// Run by [`a_spend_survives_kill_9`] in a child process: reserves, says so, then waits to be killed.
    #[test]
    #[ignore = "a helper process for a_spend_survives_kill_9"]
    fn child_reserves_then_hangs() {
        let Ok(path) = std::env::var("TESSERA_LEDGER_CHILD") else {
            return;
        };
        let ledger = BudgetLedger::open(path).unwrap();
        ledger
            .reserve("p", "mid-question", "ana", Rho(400_000), BUDGET)
            .unwrap();
        println!("RESERVED");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(120));
    }

    #[test]
    fn a_spend_survives_kill_9() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("privacy-ledger.jsonl");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ledger::tests::child_reserves_then_hangs",
                "--ignored",
                "--nocapture",
            ])
            .env("TESSERA_LEDGER_CHILD", &path)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let said = std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("RESERVED"));
        assert!(said, "the child never reserved");
        // SIGKILL: no destructor, no flush, no chance to tidy up.
        child.kill().unwrap();
        child.wait().unwrap();
        let ledger = BudgetLedger::open(&path).unwrap();
        assert_eq!(
            ledger.account("p"),
            Account {
                spent: Rho(400_000),
                questions: 1
            }
        );
        // The coordinator retrying the same question is not charged twice.
        ledger
            .reserve("p", "mid-question", "ana", Rho(400_000), BUDGET)
            .unwrap();
        assert_eq!(ledger.account("p").spent, Rho(400_000));
    }
}
