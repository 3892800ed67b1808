//! Which trusts answered a query, and what happened at the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;

use tessera_protocol::privacy::rho_text;
use tessera_protocol::PrivacyNote;

use crate::fanout::{federated_scans, NodeOutcome};
use crate::noise::StatedNoise;

/// How a trust left unasked is described: the query stopped before it was needed.
const STOPPED_EARLY: &str = "(the query stopped early)";

/// Per trust, across every fragment of a query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// Trust name → `None` if it answered every fragment, or the first failure.
    pub trusts: BTreeMap<String, Option<String>>,
    /// Fragments sent (the same to every trust).
    pub fragments: Vec<String>,
    /// Trust name → the as-at date of its data, as its node reported it.
    pub as_at: BTreeMap<String, String>,
    /// Trust name → what its answers cost the project (differential privacy), summed over fragments.
    pub privacy: BTreeMap<String, PrivacyNote>,
    /// Per fragment, per trust, per partial column: the noise the trust stated.
    pub noise: StatedNoise,
    /// Trust name → fragments whose cells it selected by a noisy threshold (each adds δ).
    pub selections: BTreeMap<String, u64>,
}

impl Provenance {
    /// Which trusts answered each fragment of an executed plan.
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> Provenance {
        let mut provenance = Provenance::default();
        for scan in federated_scans(plan) {
            provenance.record(scan.sql(), scan.outcomes());
        }
        provenance
    }

    /// The first trust that failed (not merely one left unasked because the query stopped early).
    pub fn failure(&self) -> Option<String> {
        self.trusts
            .values()
            .flatten()
            .find(|reason| !reason.ends_with(STOPPED_EARLY))
            .cloned()
    }

    /// Adds one fragment's outcomes.
    pub fn record(&mut self, fragment: &str, outcomes: Vec<(String, Option<NodeOutcome>)>) {
        self.fragments.push(fragment.to_string());
        for (trust, outcome) in outcomes {
            let entry = self.trusts.entry(trust.clone()).or_insert(None);
            match outcome {
                Some(NodeOutcome::Answered {
                    as_at, privacy, noise, ..
                }) => {
                    if !noise.is_empty() {
                        self.noise
                            .entry(fragment.to_string())
                            .or_default()
                            .insert(trust.clone(), noise);
                    }
                    if let Some(date) = as_at {
                        self.as_at.insert(trust.clone(), date);
                    }
                    if let Some(note) = privacy {
                        let kept = self.privacy.entry(trust.clone()).or_insert(PrivacyNote {
                            spent: 0,
                            ..note.clone()
                        });
                        kept.spent = kept.spent.saturating_add(note.spent);
                        kept.project_spent = kept.project_spent.max(note.project_spent);
                        kept.cached &= note.cached;
                        kept.threshold = kept.threshold.max(note.threshold);
                        if note.threshold.is_some() {
                            *self.selections.entry(trust.clone()).or_default() += 1;
                        }
                    }
                }
                Some(NodeOutcome::Failed(reason)) => {
                    entry.get_or_insert(reason);
                }
                None => {
                    entry.get_or_insert_with(|| format!("{trust} was not asked {STOPPED_EARLY}"));
                }
            }
        }
    }

    /// Trusts that answered everything.
    pub fn answered(&self) -> Vec<&str> {
        self.trusts
            .iter()
            .filter(|(_, f)| f.is_none())
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// One line for the researcher, e.g. `2 of 3 trusts answered (RJ1, RRK) — RTH unreachable
    /// (connection refused); data as at 2024-03-31`.
    pub fn summary(&self) -> String {
        if self.fragments.is_empty() {
            return "no trust data was needed".to_string();
        }
        let answered = self.answered();
        let mut line = format!(
            "{} of {} trusts answered ({})",
            answered.len(),
            self.trusts.len(),
            answered.join(", ")
        );
        let failures = self.trusts.values().flatten().cloned().collect::<Vec<_>>();
        if !failures.is_empty() {
            line.push_str(" — ");
            line.push_str(&failures.join("; "));
        }
        let mut dates = self.as_at.values().collect::<Vec<_>>();
        dates.dedup();
        match dates.as_slice() {
            [] => {}
            [one] if self.as_at.len() == answered.len() => line.push_str(&format!("; data as at {one}")),
            _ => {
                let each = self.as_at.iter().map(|(t, d)| format!("{t} {d}")).collect::<Vec<_>>();
                line.push_str(&format!("; data as at {}", each.join(", ")));
            }
        }
        if let Some(spend) = self.privacy_summary() {
            line.push_str("; ");
            line.push_str(&spend);
        }
        line
    }

    /// What a differentially private answer cost at each trust, e.g. `privacy spent: ρ = 0.05
    /// at each trust (project: ρ = 0.15 of 1 at RRK, …; ε = 0.9 at δ = 1e-9 per trust)`.
    pub fn privacy_summary(&self) -> Option<String> {
        if self.privacy.is_empty() {
            return None;
        }
        let selected = self.selection_summary();
        if self.privacy.values().all(|n| n.cached) {
            return Some(format!(
                "privacy spent: none (the same question was answered before; the same answer is given again){selected}"
            ));
        }
        let each = self
            .privacy
            .iter()
            .map(|(t, n)| {
                format!(
                    "{t} ρ = {} (project {} of {})",
                    rho_text(n.spent),
                    rho_text(n.project_spent),
                    rho_text(n.budget)
                )
            })
            .collect::<Vec<_>>();
        let most = self.privacy.values().map(|n| n.spent).max().unwrap_or(0);
        let epsilon = tessera_privacy::Rho(most).epsilon(tessera_privacy::REPORTED_DELTA);
        Some(format!(
            "privacy spent: {} (ε = {epsilon:.2} at δ = 1e-9, per trust's patients); each person's records capped at {} per question{selected}",
            each.join(", "),
            self.privacy.values().map(|n| n.records_per_person).max().unwrap_or(0)
        ))
    }

    /// When a trust selected cells by a noisy threshold (its grid was too large to release
    /// whole), e.g. `; cells selected by a noisy count of records: RRK released those reaching
    /// 314 …`; empty otherwise.
    fn selection_summary(&self) -> String {
        let each = self
            .privacy
            .iter()
            .filter_map(|(t, n)| n.threshold.map(|x| format!("{t} {x}")))
            .collect::<Vec<_>>();
        let selections = self.selections.values().copied().max().unwrap_or(1);
        match each.is_empty() {
            true => String::new(),
            false => format!(
                "; the grid was too large to release whole, so each trust released only the cells whose noisy count of \
                 records reached its threshold ({}; δ {selections}e-9 more), and a value sums only the trusts that released its cell",
                each.join(", ")
            ),
        }
    }
}
