//! What a trust says about the differential privacy of one answer (schema metadata
//! [`crate::names::PRIVACY_METADATA`]). It comes from the network: a reader checks it.

use serde::{Deserialize, Serialize};

/// A trust's account of one private answer. Privacy losses are in millionths of ρ (zCDP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyNote {
    /// What this answer cost the project at this trust (0 when it was a cached answer).
    pub spent: u64,
    /// The project's spend at this trust so far, this answer included.
    pub project_spent: u64,
    /// The project's budget at this trust.
    pub budget: u64,
    /// Records of one person the question could read, at most.
    pub records_per_person: u64,
    /// Whether this is the answer given before to the same question (no new noise, no cost).
    pub cached: bool,
    /// When the question's grid was too large to release whole: the noisy count of records a
    /// cell had to reach to be released (cells below it at this trust are not in the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
}

impl PrivacyNote {
    /// Encodes the note for schema metadata.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a privacy note always serialises")
    }

    /// Decodes a note a node sent; `None` if it is not one.
    pub fn decode(text: &str) -> Option<PrivacyNote> {
        json_within(text.as_bytes(), 1024)
    }
}

/// A project's account at one trust and the trust's limits ([`crate::names::BUDGET_ACTION`]).
/// Privacy losses in millionths of ρ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetNote {
    /// Spent so far (reservations less refunds).
    pub spent: u64,
    /// The project's budget at this trust.
    pub budget: u64,
    /// Questions charged.
    pub questions: u64,
    /// What a question spends unless it asks otherwise.
    pub question_spend: u64,
    /// The most one question may ask for.
    pub max_question_spend: u64,
    /// Records of one person a question reads, at most.
    pub records_per_person: u64,
}

impl BudgetNote {
    /// The account in words, e.g. `spent 0.15 of 1 (0.85 left) in 3 questions; a question spends
    /// 0.05 unless it asks for up to 0.25; each person's records capped at 10 per question`.
    pub fn summary(&self) -> String {
        format!(
            "spent {} of {} ({} left) in {} questions; a question spends {} unless it asks for up to {}; \
             each person's records capped at {} per question",
            rho_text(self.spent),
            rho_text(self.budget),
            rho_text(self.budget.saturating_sub(self.spent)),
            self.questions,
            rho_text(self.question_spend),
            rho_text(self.max_question_spend),
            self.records_per_person
        )
    }

    /// Encodes the note for an action result.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a budget note always serialises")
    }

    /// Decodes a note a node sent; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<BudgetNote> {
        json_within(bytes, 1024)
    }
}

/// One trust's line of a project's budget as the service reports it ([`crate::names::BUDGET_ACTION`]
/// asked of `tessera serve`): the trust's note, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustBudget {
    /// The project the account is of (the signed-in user's, as the service chose it).
    pub project: String,
    /// The trust's provider code.
    pub trust: String,
    /// The trust's account of the project (`None` with no `error`: the trust keeps no budget).
    pub note: Option<BudgetNote>,
    /// Why the trust did not say.
    pub error: Option<String>,
}

impl TrustBudget {
    /// The line of `trust`'s answer about `project`: its note, none (it keeps no budget), or why
    /// it did not say.
    pub fn of(project: &str, trust: String, answer: Result<Option<BudgetNote>, String>) -> TrustBudget {
        let (note, error) = match answer {
            Ok(note) => (note, None),
            Err(error) => (None, Some(error)),
        };
        TrustBudget {
            project: project.to_string(),
            trust,
            note,
            error,
        }
    }

    /// The account in words, as the CLI and the dashboard show it.
    pub fn summary(&self) -> String {
        match (&self.note, &self.error) {
            (Some(note), _) => note.summary(),
            (None, Some(error)) => format!("did not say ({error})"),
            (None, None) => "keeps no privacy budget (statistical disclosure control, mode = \"sdc\")".to_string(),
        }
    }

    /// Encodes the line for an action result.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a trust's budget line always serialises")
    }

    /// Decodes a line the service sent; `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<TrustBudget> {
        json_within(bytes, 4096)
    }
}

/// `bytes` from the network as a `T`, if they are one and at most `limit` long.
fn json_within<T: serde::de::DeserializeOwned>(bytes: &[u8], limit: usize) -> Option<T> {
    (bytes.len() <= limit)
        .then(|| serde_json::from_slice(bytes).ok())
        .flatten()
}

/// `millionths` of ρ as a short number (`0.05`).
pub fn rho_text(millionths: u64) -> String {
    let text = format!("{:.6}", millionths as f64 / 1e6);
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
