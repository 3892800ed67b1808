//! Disclosure tests as tables: each case is the rules in force, the SQL a researcher sends, and
//! what must come back (the released cells and the footer, or the refusal). A new case is one
//! entry; a failing table reports every failing entry, not just the first.

use tessera_coordinator::Coordinator;
use tessera_disclosure::DisclosureConfig;

use crate::cells::{compare, rows_of, Cell};

/// What the footer (the disclosure line) of a released result must say.
#[derive(Debug, Clone, Copy)]
pub enum Footer {
    /// Anything.
    Any,
    /// Exactly this.
    Is(&'static str),
    /// Contains this.
    Contains(&'static str),
    /// Does not contain this.
    Lacks(&'static str),
    /// Starts with this.
    StartsWith(&'static str),
}

impl Footer {
    fn check(self, footer: &str) -> Result<(), String> {
        let ok = match self {
            Footer::Any => true,
            Footer::Is(text) => footer == text,
            Footer::Contains(text) => footer.contains(text),
            Footer::Lacks(text) => !footer.contains(text),
            Footer::StartsWith(text) => footer.starts_with(text),
        };
        match ok {
            true => Ok(()),
            false => Err(format!("footer {footer:?} does not match {self:?}")),
        }
    }
}

/// What a case must give back.
#[derive(Debug, Clone)]
pub enum Expect {
    /// These rows (in this order) and a footer that matches.
    Rows(Vec<Vec<Cell>>, Footer),
    /// A refusal whose message contains this text.
    Refused(&'static str),
}

/// One case: under `rules`, `sql` gives `expect`.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub rules: DisclosureConfig,
    pub sql: &'static str,
    pub expect: Expect,
}

impl Case {
    /// A case expecting `rows` with any footer.
    pub fn rows(name: &'static str, rules: DisclosureConfig, sql: &'static str, rows: Vec<Vec<Cell>>) -> Case {
        Case::rows_with(name, rules, sql, rows, Footer::Any)
    }

    /// A case expecting `rows` and a footer matching `footer`.
    pub fn rows_with(
        name: &'static str,
        rules: DisclosureConfig,
        sql: &'static str,
        rows: Vec<Vec<Cell>>,
        footer: Footer,
    ) -> Case {
        Case {
            name,
            rules,
            sql,
            expect: Expect::Rows(rows, footer),
        }
    }

    /// A case expecting a refusal that says `reason`.
    pub fn refused(name: &'static str, rules: DisclosureConfig, sql: &'static str, reason: &'static str) -> Case {
        Case {
            name,
            rules,
            sql,
            expect: Expect::Refused(reason),
        }
    }

    async fn check(&self, coordinator: &Coordinator) -> Result<(), String> {
        match (coordinator.query(self.sql).await, &self.expect) {
            (Ok(result), Expect::Rows(rows, footer)) => {
                compare(&rows_of(&result.batches), rows, true)?;
                footer.check(&result.disclosure)
            }
            (Ok(result), Expect::Refused(_)) => Err(format!("answered with {} rows", result.num_rows())),
            (Err(error), Expect::Refused(reason)) if error.message.contains(reason) => Ok(()),
            (Err(error), _) => Err(format!("failed: {}", error.message)),
        }
    }
}

/// Runs every case, each with a coordinator made for its rules, and fails listing every case
/// that did not give what it expects.
pub async fn check_cases(cases: &[Case], coordinator: impl Fn(&DisclosureConfig) -> Coordinator) {
    let mut failures = Vec::new();
    for case in cases {
        if let Err(why) = case.check(&coordinator(&case.rules)).await {
            failures.push(format!("{}: {why}\n  SQL: {}", case.name, case.sql));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// NULL, for expected rows.
pub fn null() -> Cell {
    Cell::Null
}
