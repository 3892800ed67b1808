//! Choosing which cells to release when a question's public grid is too large to release every
//! cell: a cell is released only if its noisy count of records reaches a threshold τ
//! (τ-thresholding; Korolova, Kenthapadi, Mishra and Ntoulas, WWW 2009; Wilson, Zhang, Lam,
//! Desfontaines, Simmons-Marengo and Gipson, "Differentially Private SQL with Bounded User
//! Contribution", PoPETs 2020).
//!
//! Why it is private. One person has at most `k` records in a question (contribution bounding),
//! so at most `k` cells hold any of theirs. A cell that exists both with and without them is
//! released or not by its noisy count, which is calibrated like any other statistic (its share
//! of ρ). A cell that exists only because of them holds at most `k` of their records; it is
//! released only if the noise lifts it from at most `k` to τ. The discrete Gaussian of variance
//! σ² has tails no heavier than the continuous one's, P(Z ≥ t) ≤ exp(−t² / 2σ²) (Canonne,
//! Kamath and Steinke 2020, Proposition 23), so with τ = k + σ √(2 ln(k / δ)) the chance that
//! any of the `k` cells is released is at most δ: the answer is (ε, δ + δ_zCDP)-DP.

/// The δ a question's cell selection adds (one in a billion, as [`crate::REPORTED_DELTA`]).
pub const SELECTION_DELTA: f64 = crate::accounting::REPORTED_DELTA;

/// The smallest noisy count a cell must reach to be released, when one person has at most
/// `records` records in the question and the selection count's noise has standard deviation
/// `sd`: τ = k + σ √(2 ln(k / δ)), rounded up to a whole count.
pub fn threshold(records: u64, sd: f64, delta: f64) -> u64 {
    let k = records.max(1) as f64;
    let margin = sd * (2.0 * (k / delta).ln()).sqrt();
    (k + margin).ceil() as u64
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::sampler::discrete_gaussian;

    #[test]
    fn the_threshold_grows_with_the_noise_the_records_and_a_smaller_delta() {
        // (records, sd, δ, τ): τ = k + σ √(2 ln(k / δ)).
        let cases = [
            (
                10,
                44.72,
                1e-9,
                10 + (44.72f64 * (2.0 * (10.0f64 / 1e-9).ln()).sqrt()).ceil() as u64,
            ),
            (10, 0.0, 1e-9, 10),
            (1, 10.0, 1e-9, 1 + (10.0f64 * (2.0 * 1e9f64.ln()).sqrt()).ceil() as u64),
        ];
        for (records, sd, delta, expected) in cases {
            assert_eq!(threshold(records, sd, delta), expected, "{records} {sd} {delta}");
        }
        assert!(threshold(10, 44.72, 1e-9) > threshold(10, 44.72, 1e-3));
        assert!(threshold(20, 44.72, 1e-9) > threshold(10, 44.72, 1e-9));
        // The default: ten records a person, a count's share of ρ = 0.05 split in two.
        assert_eq!(threshold(10, 10.0 / (2.0f64 * 0.025).sqrt(), SELECTION_DELTA), 314);
    }

    #[test]
    fn a_cell_of_one_persons_records_is_released_no_more_often_than_delta_allows() {
        // A large δ so that the chance can be measured: each of one person's k cells (of at most
        // k records) may pass with at most δ / k.
        let (records, sigma2, delta) = (10u64, 400u128, 0.05);
        let tau = threshold(records, (sigma2 as f64).sqrt(), delta) as i128;
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let draws = 200_000;
        let passed = (0..draws)
            .filter(|_| records as i128 + discrete_gaussian(&mut rng, sigma2) >= tau)
            .count();
        let rate = passed as f64 / draws as f64;
        assert!(rate <= delta / records as f64, "released {rate} of the time, τ = {tau}");
        // Without the margin a one-person cell would pass about half the time.
        let unguarded = (0..draws)
            .filter(|_| records as i128 + discrete_gaussian(&mut rng, sigma2) >= records as i128)
            .count();
        assert!(unguarded as f64 / draws as f64 > 0.4);
    }
}
