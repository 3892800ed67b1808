//! Zero-concentrated differential privacy (zCDP) accounting: Bun and Steinke, "Concentrated
//! Differential Privacy: Simplifications, Extensions, and Lower Bounds" (TCC 2016).
//!
//! - Adding discrete Gaussian noise of variance σ² to a statistic whose value one person can
//!   change by at most Δ (its L2 sensitivity) is ρ-zCDP with ρ = Δ² / (2σ²) (Canonne, Kamath
//!   and Steinke 2020, Theorem 14).
//! - Releases compose by adding their ρ: a question of several statistics spends the sum, and a
//!   project's questions spend the sum of theirs.
//! - ρ-zCDP implies (ε, δ)-DP for every δ > 0 with ε = ρ + 2√(ρ ln(1/δ)) (Bun and Steinke,
//!   Proposition 1.3), the figure shown to users beside ρ.
//!
//! Budgets and spends are counted in whole millionths of ρ ([`Rho`]), so a ledger adds and
//! compares them exactly.

use serde::{Deserialize, Serialize};

use crate::sampler::MAX_VARIANCE;

/// A privacy loss, in millionths of ρ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rho(pub u64);

impl Rho {
    /// Millionths in one unit of ρ.
    pub const SCALE: u64 = 1_000_000;

    /// `value` (a ρ such as 0.05) in millionths, rounded down; `None` unless it is finite,
    /// positive and at most 1000.
    pub fn from_f64(value: f64) -> Option<Rho> {
        (value.is_finite() && value > 0.0 && value <= 1000.0)
            .then(|| Rho((value * Rho::SCALE as f64).floor() as u64))
            .filter(|r| r.0 > 0)
    }

    /// A ρ written as a number (`0.05`), as [`Rho::from_f64`] takes it.
    pub fn parse(text: &str) -> Option<Rho> {
        Rho::from_f64(text.trim().parse().ok()?)
    }

    /// As a number.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / Rho::SCALE as f64
    }

    /// ε of (ε, δ)-DP implied by this ρ.
    pub fn epsilon(self, delta: f64) -> f64 {
        epsilon(self.as_f64(), delta)
    }

    /// `self + other`, saturating.
    pub fn plus(self, other: Rho) -> Rho {
        Rho(self.0.saturating_add(other.0))
    }

    /// `self - other`, at least zero.
    pub fn minus(self, other: Rho) -> Rho {
        Rho(self.0.saturating_sub(other.0))
    }

    /// An equal share for each of `parts` statistics, rounded down.
    pub fn share(self, parts: usize) -> Rho {
        Rho(self.0 / parts.max(1) as u64)
    }
}

impl std::fmt::Display for Rho {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = format!("{:.6}", self.as_f64());
        let text = text.trim_end_matches('0').trim_end_matches('.');
        write!(f, "{text}")
    }
}

/// ε = ρ + 2√(ρ ln(1/δ)).
pub fn epsilon(rho: f64, delta: f64) -> f64 {
    rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt()
}

/// The δ Tessera reports ε at: one in a billion, far below one over the number of patients of
/// any trust.
pub const REPORTED_DELTA: f64 = 1e-9;

/// Why a statistic cannot be given noise within its share of the budget.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NoiseError {
    #[error("the statistic's sensitivity ({0}) is not a positive finite number")]
    Sensitivity(f64),
    #[error("its share of the question's privacy spend is zero")]
    NoBudget,
    #[error("the noise it needs (standard deviation {0:.3e}) is beyond what the sampler draws exactly; give it a larger share of the spend or narrower bounds")]
    TooLarge(f64),
}

/// The discrete Gaussian to add to a statistic of sensitivity `sensitivity` with privacy loss
/// at most `rho`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// The variance parameter σ², an integer (rounded up: the actual loss is at most `rho`).
    pub sigma2: u128,
    /// The loss this noise actually costs: Δ² / (2σ²) ≤ the share given.
    pub rho: f64,
}

impl Calibration {
    /// σ² = ⌈Δ² / (2ρ)⌉, at least 1.
    pub fn new(sensitivity: f64, rho: Rho) -> Result<Calibration, NoiseError> {
        if !(sensitivity.is_finite() && sensitivity > 0.0) {
            return Err(NoiseError::Sensitivity(sensitivity));
        }
        if rho.0 == 0 {
            return Err(NoiseError::NoBudget);
        }
        let exact = sensitivity * sensitivity / (2.0 * rho.as_f64());
        if exact > MAX_VARIANCE as f64 {
            return Err(NoiseError::TooLarge(exact.sqrt()));
        }
        // The float is rounded up, then nudged up once more so that rounding in the division
        // can never make the noise smaller than the loss it is charged for.
        let sigma2 =
            ((exact.ceil() as u128).max(1) + u128::from(exact.fract() == 0.0 && exact >= 1.0)).min(MAX_VARIANCE);
        Ok(Calibration {
            sigma2,
            rho: sensitivity * sensitivity / (2.0 * sigma2 as f64),
        })
    }

    /// The noise's standard deviation.
    pub fn sd(&self) -> f64 {
        (self.sigma2 as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrations() {
        // (sensitivity, ρ in millionths, σ²)
        let cases = [
            (1.0, 500_000, 2),       // Δ²/2ρ = 1, nudged to 2
            (10.0, 10_000, 5_001),   // 100 / 0.02 = 5000, nudged
            (10.0, 30_000, 1_667),   // 1666.67, rounded up
            (3.0, 1_000_000_000, 1), // below 1: at least 1
            (2_500_000.0, 10_000, 312_500_000_000_001),
        ];
        for (sensitivity, rho, sigma2) in cases {
            let c = Calibration::new(sensitivity, Rho(rho)).unwrap();
            assert_eq!(c.sigma2, sigma2, "Δ = {sensitivity}, ρ = {rho}");
            assert!(c.rho <= Rho(rho).as_f64(), "charged {} for a share of {rho}", c.rho);
        }
    }

    #[test]
    fn calibrations_refused() {
        assert_eq!(Calibration::new(0.0, Rho(1)), Err(NoiseError::Sensitivity(0.0)));
        assert!(Calibration::new(f64::NAN, Rho(1)).is_err());
        assert_eq!(Calibration::new(1.0, Rho(0)), Err(NoiseError::NoBudget));
        assert!(matches!(Calibration::new(1e12, Rho(1)), Err(NoiseError::TooLarge(_))));
    }

    #[test]
    fn epsilon_at_delta() {
        // (ρ, δ, ε)
        let cases = [
            (1.0, 1e-9, 1.0 + 2.0 * (1e9f64).ln().sqrt()),
            (0.05, 1e-6, 0.05 + 2.0 * (0.05 * (1e6f64).ln()).sqrt()),
        ];
        for (rho, delta, expected) in cases {
            assert!((epsilon(rho, delta) - expected).abs() < 1e-12);
        }
        assert!((Rho(1_000_000).epsilon(1e-9) - 10.10).abs() < 0.01);
    }

    #[test]
    fn rho_in_millionths() {
        let cases = [
            (0.05, Some(50_000)),
            (1.0, Some(1_000_000)),
            (0.0, None),
            (-1.0, None),
            (f64::INFINITY, None),
            (1e-7, None),
            (2000.0, None),
        ];
        for (value, expected) in cases {
            assert_eq!(Rho::from_f64(value).map(|r| r.0), expected, "{value}");
        }
        assert_eq!(Rho(50_000).to_string(), "0.05");
        assert_eq!(Rho(1_000_000).to_string(), "1");
        assert_eq!(Rho(100_000).share(3), Rho(33_333));
    }
}
