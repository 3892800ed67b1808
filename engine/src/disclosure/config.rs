//! `[disclosure]` in `federation.toml`.

use serde::{Deserialize, Serialize};

/// Whether disclosure control runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    On,
    /// Exact answers, small cells included: only with `allow_unsafe_output = true`.
    Off,
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
}

impl Default for DisclosureConfig {
    fn default() -> Self {
        DisclosureConfig {
            mode: Mode::On,
            allow_unsafe_output: false,
            threshold: 10,
            round_to: 5,
            redact_at_or_below: 0,
            zeros: Zeros::Suppress,
            min_residual_df: 10,
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
        if self.mode == Mode::Off {
            if !self.allow_unsafe_output {
                return Err("[disclosure] mode = \"off\" releases exact small counts; set allow_unsafe_output = true to confirm".into());
            }
            return Ok(());
        }
        if self.threshold < 1 {
            return Err("[disclosure] threshold: must be at least 1".into());
        }
        if self.round_to < 1 {
            return Err("[disclosure] round_to: must be at least 1 (1 means no rounding)".into());
        }
        Ok(())
    }

    /// Whether rules run.
    pub fn is_on(&self) -> bool {
        self.mode == Mode::On
    }
}
