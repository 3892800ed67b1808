//! `[disclosure]` in `federation.toml`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Whether disclosure control runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    On,
    /// Exact answers, small cells included: only with `allow_unsafe_output = true`.
    Off,
    /// Differential privacy: every trust adds noise to what it sends and keeps the budget; the
    /// coordinator merges the noisy partials exactly and applies no rule of its own.
    Dp,
}

/// What a zero count is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Zeros {
    /// Treated like any small cell: suppressed (the default; a zero can reveal that everyone in a group shares a trait).
    #[default]
    Suppress,
    /// Released as 0 (for structural zeros known to be safe).
    Release,
}

/// How released values are perturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Perturbation {
    /// The cell key method: the same records always get the same noise.
    #[default]
    CellKey,
    /// No noise (threshold, dominance and rounding only).
    Off,
}

/// The disclosure rules of a federation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisclosureConfig {
    pub mode: Mode,
    pub allow_unsafe_output: bool,
    /// Smallest support a released cell may have.
    pub threshold: u64,
    /// Released counts are rounded to the nearest multiple of this (1: no rounding).
    pub round_to: u64,
    /// Counts at or below this are suppressed before rounding (0: off; OpenSAFELY uses 7).
    pub redact_at_or_below: u64,
    pub zeros: Zeros,
    /// Smallest residual degrees of freedom (n - 2) for correlation, covariance and regression.
    pub min_residual_df: u64,
    /// NK dominance rule with n = 2: a sum or mean of a sensitive measure is suppressed when its two
    /// largest contributions exceed this share of the total (1: off).
    pub nk_k: f64,
    /// p-percent rule: suppressed when the total less its two largest contributions is below this
    /// share of the largest (the second-largest contributor could estimate the largest to within p).
    /// 0: off.
    pub p_percent: f64,
    /// Perturbation of released values (default: the cell key method).
    pub perturbation: Perturbation,
    /// Largest change to a count (the ptable's D); counts near the threshold change less, so
    /// that no count below it is ever shown.
    pub noise_max: u32,
    /// Share of counts left unchanged (the ptable's p_stay).
    pub noise_stay: f64,
    /// Scale of the noise on magnitudes, as a share of the largest contribution (sums), or of the
    /// value at `threshold` records (variances and models; smaller with more records).
    pub noise_magnitude: f64,
    /// Most distinct values a project may be given (a statistic of one cell; 0: no limit):
    /// averaging many different noisy values that all involve the same person is the cell key
    /// method's residual risk. A value given before is free (it gets the same noise).
    pub release_budget: u64,
    /// Most distinct sets of records one question may release statistics about.
    pub max_sets_per_question: u64,
    /// The project's release log (default: `~/.local/share/tessera/releases/<project>.jsonl`).
    /// Relative paths are relative to `federation.toml`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_log: Option<PathBuf>,
}

impl Default for DisclosureConfig {
    fn default() -> Self {
        DisclosureConfig {
            mode: Mode::On,
            allow_unsafe_output: false,
            threshold: 10,
            round_to: 1,
            redact_at_or_below: 0,
            zeros: Zeros::Suppress,
            min_residual_df: 10,
            nk_k: 0.9,
            p_percent: 0.10,
            perturbation: Perturbation::CellKey,
            noise_max: 3,
            noise_stay: 0.5,
            noise_magnitude: 0.1,
            release_budget: 10_000,
            max_sets_per_question: 50,
            release_log: None,
        }
    }
}

impl DisclosureConfig {
    /// No disclosure control (tests of exactness, and `allow_unsafe_output` deployments).
    pub fn off() -> DisclosureConfig {
        DisclosureConfig {
            mode: Mode::Off,
            allow_unsafe_output: true,
            ..DisclosureConfig::default()
        }
    }

    /// Checks the values; an unsafe setting must be confirmed.
    pub fn check(&self) -> Result<(), String> {
        if self.mode == Mode::Dp {
            return Ok(());
        }
        if self.mode == Mode::Off {
            if !self.allow_unsafe_output {
                return Err("[disclosure] mode = \"off\" releases exact small counts; set allow_unsafe_output = true to confirm".into());
            }
            return Ok(());
        }
        if !(1..=1_000_000).contains(&self.threshold) {
            return Err("[disclosure] threshold: must be from 1 to 1000000".into());
        }
        if self.round_to > 1_000_000 || self.redact_at_or_below > 1_000_000 {
            return Err("[disclosure] round_to and redact_at_or_below: must be at most 1000000".into());
        }
        if self.round_to < 1 {
            return Err("[disclosure] round_to: must be at least 1 (1 means no rounding)".into());
        }
        if !(self.nk_k > 0.0 && self.nk_k <= 1.0) {
            return Err(format!(
                "[disclosure] nk_k: must be above 0 and at most 1 (1 turns the NK rule off), not {}",
                self.nk_k
            ));
        }
        if !(0.0..1.0).contains(&self.p_percent) {
            return Err(format!(
                "[disclosure] p_percent: must be a share from 0 (off) to below 1, e.g. 0.10, not {}",
                self.p_percent
            ));
        }
        if !(1..=100).contains(&self.noise_max) {
            return Err(format!(
                "[disclosure] noise_max: must be from 1 to 100, not {}",
                self.noise_max
            ));
        }
        if !(0.0..1.0).contains(&self.noise_stay) {
            return Err(format!(
                "[disclosure] noise_stay: must be a share from 0 to below 1, e.g. 0.5, not {}",
                self.noise_stay
            ));
        }
        if !(self.noise_magnitude > 0.0 && self.noise_magnitude <= 1.0) {
            return Err(format!(
                "[disclosure] noise_magnitude: must be above 0 and at most 1, e.g. 0.1, not {}",
                self.noise_magnitude
            ));
        }
        Ok(())
    }

    /// Whether released values are perturbed by the cell key method.
    pub fn perturbs(&self) -> bool {
        self.is_on() && self.perturbation == Perturbation::CellKey
    }

    /// Whether the coordinator's rules (thresholds, cell keys, dominance) run.
    pub fn is_on(&self) -> bool {
        self.mode == Mode::On
    }

    /// Whether the trusts answer with differential privacy (the coordinator adds nothing).
    pub fn is_dp(&self) -> bool {
        self.mode == Mode::Dp
    }

    /// Whether what researchers see is protected, by either method.
    pub fn protects(&self) -> bool {
        self.is_on() || self.is_dp()
    }

    /// Whether a dominance rule (NK or p-percent) is in force.
    pub fn checks_dominance(&self) -> bool {
        self.is_on() && (self.nk_k < 1.0 || self.p_percent > 0.0)
    }

    /// Whether a cell with this total and these two largest contributions is dominated.
    pub fn dominated(&self, total: f64, first: f64, second: f64) -> bool {
        let nk = self.nk_k < 1.0 && first + second > self.nk_k * total;
        let p = self.p_percent > 0.0 && total - first - second < self.p_percent * first;
        nk || p
    }
}
