//! `[privacy]` in `node.toml`: whether this trust answers with differential privacy, and the
//! budget it grants each project.
//!
//! ```toml
//! [privacy]
//! mode = "dp"                  # "dp": noise added here, budget kept here; "sdc": exact partials to the coordinator
//! records_per_person = 10      # a person's records a question may read, at most
//! project_budget = 1.0         # ρ each project may spend at this trust
//! question_spend = 0.05        # ρ of a question that asks for no spend of its own
//! max_question_spend = 0.25    # the most ρ one question may ask for
//! ledger = "privacy-ledger.jsonl"
//! max_cells = 10000            # largest grid of cells one answer releases
//! period = ["2023-04", "2025-03"]  # the public months dates are grouped into
//! ```

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tessera_privacy::Rho;

/// How this trust protects what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrivacyMode {
    /// Statistical disclosure control at the coordinator: exact partials go to the pinned
    /// coordinator, which applies thresholds and the cell key method.
    #[default]
    Sdc,
    /// Differential privacy: every answer is noised here, against this trust's own budget.
    Dp,
}

/// `[privacy]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    pub mode: PrivacyMode,
    pub records_per_person: u64,
    pub project_budget: f64,
    pub question_spend: f64,
    pub max_question_spend: f64,
    /// Relative to `node.toml`.
    pub ledger: PathBuf,
    pub max_cells: u64,
    /// First and last month (`YYYY-MM`) of the public period.
    pub period: [String; 2],
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            mode: PrivacyMode::Sdc,
            records_per_person: DEFAULT_RECORDS_PER_PERSON,
            project_budget: 1.0,
            question_spend: 0.05,
            max_question_spend: 0.25,
            ledger: PathBuf::from("privacy-ledger.jsonl"),
            max_cells: 10_000,
            period: ["2023-04".into(), "2025-03".into()],
        }
    }
}

/// A person's records one question reads, at most, unless configured.
pub const DEFAULT_RECORDS_PER_PERSON: u64 = 10;

/// `[privacy]` checked and in the units the node uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub records_per_person: u64,
    pub project_budget: Rho,
    pub question_spend: Rho,
    pub max_question_spend: Rho,
    pub max_cells: u64,
    pub period: (NaiveDate, NaiveDate),
}

impl PrivacyConfig {
    /// Checks the values (`Err` names the key at fault).
    pub fn settings(&self) -> Result<Settings, String> {
        let rho = |key: &str, value: f64| {
            Rho::from_f64(value)
                .ok_or_else(|| format!("[privacy] {key}: must be a ρ above 0 and at most 1000, not {value}"))
        };
        let month = |key: &str, text: &str| {
            NaiveDate::parse_from_str(&format!("{text}-01"), "%Y-%m-%d")
                .map_err(|_| format!("[privacy] period: {key} month must be YYYY-MM, not {text:?}"))
        };
        let settings = Settings {
            records_per_person: self.records_per_person,
            project_budget: rho("project_budget", self.project_budget)?,
            question_spend: rho("question_spend", self.question_spend)?,
            max_question_spend: rho("max_question_spend", self.max_question_spend)?,
            max_cells: self.max_cells,
            period: (
                month("the first", &self.period[0])?,
                month("the last", &self.period[1])?,
            ),
        };
        if !(1..=1000).contains(&settings.records_per_person) {
            return Err(format!(
                "[privacy] records_per_person: must be from 1 to 1000, not {}",
                self.records_per_person
            ));
        }
        if settings.question_spend > settings.max_question_spend {
            return Err("[privacy] question_spend: must be at most max_question_spend".into());
        }
        if !(1..=1_000_000).contains(&settings.max_cells) {
            return Err("[privacy] max_cells: must be from 1 to 1000000".into());
        }
        if settings.period.0 > settings.period.1 {
            return Err("[privacy] period: the first month must not be after the last".into());
        }
        Ok(settings)
    }
}

impl Settings {
    /// The spend of a question that asked for `asked` (a ρ), or why it may not have it.
    pub fn spend(&self, asked: Option<Rho>) -> Result<Rho, String> {
        let Some(rho) = asked else {
            return Ok(self.question_spend);
        };
        // Compared in millionths as asked: a conversion must never round a spend down to the cap.
        if rho.0 == 0 || rho.0 > 1000 * Rho::SCALE {
            return Err(format!(
                "a question's privacy spend must be a ρ above 0 and at most 1000, not ρ = {rho}"
            ));
        }
        if rho > self.max_question_spend {
            return Err(format!(
                "a question may spend at most ρ = {} at this trust; it asked for ρ = {rho}",
                self.max_question_spend
            ));
        }
        Ok(rho)
    }
}
