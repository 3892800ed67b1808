//! Per-trust character: size, case mix, efficiency, deprivation of the catchment.

use super::rng::{stream, unit};

/// What makes one synthetic trust differ from another.
#[derive(Debug, Clone)]
pub struct TrustProfile {
    pub code: String,
    /// Relative size; rows are shared between trusts in proportion.
    pub size: f64,
    /// Share of admissions that are emergencies.
    pub emergency_share: f64,
    /// Multiplier on length of stay (below 1: shorter stays).
    pub los_factor: f64,
    /// Share of type-1 A&E attendances that breach four hours.
    pub ae_breach_rate: f64,
    /// Base outpatient did-not-attend rate.
    pub dna_rate: f64,
    /// Deprivation tilt of the catchment: positive means more people in low (deprived) deciles.
    pub deprivation: f64,
    /// Staff per unit of activity (above 1: less productive).
    pub staffing: f64,
    /// Per-specialty multipliers on case mix, in `treatment_specialty` order of `super::apc::SPECIALTIES`.
    pub specialty_tilt: Vec<f64>,
}

/// Hand-set profiles for the demo trusts, so the tour shows real differences.
fn known(code: &str) -> Option<(f64, f64, f64, f64, f64, f64, f64)> {
    // size, emergency share, LOS factor, A&E breach rate, DNA rate, deprivation, staffing
    Some(match code {
        "RRK" => (1.6, 0.44, 1.08, 0.38, 0.092, 0.9, 1.05),
        "RTH" => (1.0, 0.38, 0.92, 0.27, 0.061, -0.6, 0.97),
        "RJ1" => (1.3, 0.41, 0.98, 0.31, 0.078, 0.3, 1.10),
        _ => return None,
    })
}

impl TrustProfile {
    /// The profile of trust `code`: hand-set for the demo trusts, otherwise drawn from the seed.
    pub fn new(code: &str, seed: u64, specialties: usize) -> TrustProfile {
        let mut rng = stream(seed, &format!("{code}/profile"));
        let mut draw = |lo: f64, hi: f64| lo + (hi - lo) * unit(&mut rng);
        let (size, emergency_share, los_factor, ae_breach_rate, dna_rate, deprivation, staffing) = known(code)
            .unwrap_or_else(|| {
                (
                    draw(0.5, 1.7),
                    draw(0.36, 0.46),
                    draw(0.85, 1.15),
                    draw(0.22, 0.42),
                    draw(0.05, 0.10),
                    draw(-1.0, 1.0),
                    draw(0.9, 1.15),
                )
            });
        let specialty_tilt = (0..specialties).map(|_| draw(0.7, 1.3)).collect();
        TrustProfile {
            code: code.to_string(),
            size,
            emergency_share,
            los_factor,
            ae_breach_rate,
            dna_rate,
            deprivation,
            staffing,
            specialty_tilt,
        }
    }
}
