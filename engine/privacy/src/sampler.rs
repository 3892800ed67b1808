//! Exact sampling of integer noise: the discrete Gaussian of Canonne, Kamath and Steinke,
//! "The Discrete Gaussian for Differential Privacy" (NeurIPS 2020), Algorithms 1–3.
//!
//! Every step uses integers and exact rational probabilities: no floating point touches the
//! noise, so the released value's low bits cannot tell the true value (Mironov, "On
//! significance of the least significant bits for differential privacy", CCS 2012, broke
//! floating-point Laplace that way). The variance is an integer `σ²` (callers round it up,
//! which only adds privacy).
//!
//! Arithmetic is in `u128`. For `σ² ≤` [`MAX_VARIANCE`], a candidate is accepted with a
//! probability computed exactly unless its square overflows, which needs the Laplace proposal
//! beyond 44 of its scales; such a candidate would be accepted with probability below
//! `e^-900`, and is rejected instead.

use rand::{Rng, RngCore};

/// Largest variance the sampler takes (σ ≈ 3.2 × 10⁸).
pub const MAX_VARIANCE: u128 = 100_000_000_000_000_000;

/// A coin that lands heads with probability `numerator / denominator` (`numerator ≤ denominator`).
pub fn bernoulli(rng: &mut dyn RngCore, numerator: u128, denominator: u128) -> bool {
    debug_assert!(denominator > 0 && numerator <= denominator);
    rng.random_range(0..denominator) < numerator
}

/// A coin that lands heads with probability `exp(-numerator / denominator)` (Algorithm 1).
pub fn bernoulli_exp_neg(rng: &mut dyn RngCore, numerator: u128, denominator: u128) -> bool {
    debug_assert!(denominator > 0);
    if numerator > denominator {
        // exp(-γ) = exp(-1)^⌊γ⌋ · exp(-(γ - ⌊γ⌋)).
        let whole = numerator / denominator;
        for _ in 0..whole {
            if !bernoulli_exp_neg(rng, 1, 1) {
                return false;
            }
        }
        return bernoulli_exp_neg(rng, numerator % denominator, denominator);
    }
    // γ ≤ 1: the first k with a tails of Bernoulli(γ / k) is odd with probability exp(-γ).
    let mut k: u128 = 1;
    loop {
        let Some(scaled) = denominator.checked_mul(k) else {
            // Unreachable in practice (k grows like a Poisson count); stopping here is the
            // parity of a k far past any realistic draw.
            return k % 2 == 1;
        };
        if !bernoulli(rng, numerator, scaled) {
            return k % 2 == 1;
        }
        k += 1;
    }
}

/// Discrete Laplace noise with scale `t ≥ 1`: `P(x) ∝ exp(-|x| / t)` (Algorithm 2).
pub fn discrete_laplace(rng: &mut dyn RngCore, t: u128) -> i128 {
    debug_assert!(t >= 1);
    loop {
        let u = rng.random_range(0..t);
        if !bernoulli_exp_neg(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_neg(rng, 1, 1) {
            v += 1;
        }
        let x = u + t * v;
        let negative = bernoulli(rng, 1, 2);
        if negative && x == 0 {
            continue;
        }
        let x = x as i128;
        return if negative { -x } else { x };
    }
}

/// Discrete Gaussian noise with variance parameter `sigma2` (an integer from 1 to
/// [`MAX_VARIANCE`]): `P(x) ∝ exp(-x² / (2σ²))` over the integers (Algorithm 3).
pub fn discrete_gaussian(rng: &mut dyn RngCore, sigma2: u128) -> i128 {
    assert!(
        (1..=MAX_VARIANCE).contains(&sigma2),
        "the discrete Gaussian takes a variance from 1 to {MAX_VARIANCE}, not {sigma2}"
    );
    let t = integer_sqrt(sigma2) + 1;
    loop {
        let y = discrete_laplace(rng, t);
        // γ = (|y| − σ²/t)² / (2σ²) = (|y|·t − σ²)² / (2σ²t²).
        let Some(numerator) = y
            .unsigned_abs()
            .checked_mul(t)
            .map(|yt| yt.abs_diff(sigma2))
            .and_then(|d| d.checked_mul(d))
        else {
            continue;
        };
        let denominator = 2 * sigma2 * t * t;
        if bernoulli_exp_neg(rng, numerator, denominator) {
            return y;
        }
    }
}

/// ⌊√n⌋.
pub fn integer_sqrt(n: u128) -> u128 {
    if n < 2 {
        return n;
    }
    let mut x = (n as f64).sqrt() as u128;
    while x * x > n {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= n {
        x += 1;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(20201211)
    }

    /// Mean and variance of `n` draws.
    fn moments(draws: &[i128]) -> (f64, f64) {
        let n = draws.len() as f64;
        let mean = draws.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = draws.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    #[test]
    fn integer_square_roots() {
        for (n, root) in [
            (0, 0),
            (1, 1),
            (3, 1),
            (4, 2),
            (99, 9),
            (100, 10),
            (MAX_VARIANCE, 316_227_766),
        ] {
            assert_eq!(integer_sqrt(n), root, "{n}");
        }
    }

    #[test]
    fn coins_land_at_their_exact_rates() {
        // (numerator, denominator, expected rate)
        let cases = [
            (1u128, 1u128, (-1f64).exp()),
            (1, 2, (-0.5f64).exp()),
            (5, 2, (-2.5f64).exp()),
            (0, 7, 1.0),
        ];
        let mut rng = rng();
        for (n, d, rate) in cases {
            let draws = 200_000;
            let heads = (0..draws).filter(|_| bernoulli_exp_neg(&mut rng, n, d)).count() as f64;
            let observed = heads / draws as f64;
            let se = (rate * (1.0 - rate) / draws as f64).sqrt().max(1e-9);
            assert!(
                (observed - rate).abs() < 5.0 * se,
                "exp(-{n}/{d}): {observed} vs {rate}"
            );
        }
    }

    #[test]
    fn discrete_gaussian_has_its_stated_mean_and_variance() {
        // (σ², tolerance on the variance as a share). For σ ≥ 1 the discrete Gaussian's
        // variance is within 1e-8 of σ² (CKS, Corollary 9), so the sample variance is the test.
        let cases = [
            (1u128, 0.03),
            (4, 0.03),
            (2_500, 0.03),
            (1_000_000, 0.03),
            (10_000_000_000_000, 0.03),
        ];
        let mut rng = rng();
        for (sigma2, tolerance) in cases {
            let draws = (0..40_000)
                .map(|_| discrete_gaussian(&mut rng, sigma2))
                .collect::<Vec<_>>();
            let (mean, var) = moments(&draws);
            let sd = (sigma2 as f64).sqrt();
            assert!(mean.abs() < 5.0 * sd / 200.0, "σ² = {sigma2}: mean {mean}");
            assert!(
                (var / sigma2 as f64 - 1.0).abs() < tolerance,
                "σ² = {sigma2}: variance {var}"
            );
        }
    }

    #[test]
    fn discrete_gaussian_matches_its_probabilities_point_by_point() {
        // σ² = 4: P(x) = exp(-x²/8) / Σ exp(-k²/8); the observed shares must match at every x.
        let sigma2 = 4u128;
        let normaliser: f64 = (-60i32..=60).map(|k| (-(k * k) as f64 / 8.0).exp()).sum();
        let mut rng = rng();
        let draws = 200_000;
        let mut counts = std::collections::BTreeMap::new();
        for _ in 0..draws {
            *counts.entry(discrete_gaussian(&mut rng, sigma2)).or_insert(0u64) += 1;
        }
        for x in -6i128..=6 {
            let p = (-(x * x) as f64 / 8.0).exp() / normaliser;
            let observed = *counts.get(&x).unwrap_or(&0) as f64 / draws as f64;
            let se = (p * (1.0 - p) / draws as f64).sqrt();
            assert!((observed - p).abs() < 5.0 * se, "P({x}) = {observed}, expected {p}");
        }
        // Symmetric: as many draws below zero as above.
        let below: u64 = counts.range(..0).map(|(_, c)| c).sum();
        let above: u64 = counts.range(1..).map(|(_, c)| c).sum();
        let se = (draws as f64).sqrt();
        assert!(
            (below as f64 - above as f64).abs() < 5.0 * se,
            "{below} below, {above} above"
        );
    }

    #[test]
    fn discrete_laplace_has_its_stated_variance() {
        // Var = 2e^{-1/t} / (1 - e^{-1/t})².
        let mut rng = rng();
        for t in [1u128, 3, 50] {
            let q = (-1.0 / t as f64).exp();
            let expected = 2.0 * q / (1.0 - q).powi(2);
            let draws = (0..60_000).map(|_| discrete_laplace(&mut rng, t)).collect::<Vec<_>>();
            let (mean, var) = moments(&draws);
            assert!(mean.abs() < 5.0 * (expected / 60_000.0).sqrt(), "t = {t}: mean {mean}");
            assert!(
                (var / expected - 1.0).abs() < 0.05,
                "t = {t}: variance {var} vs {expected}"
            );
        }
    }

    #[test]
    fn a_seeded_sampler_is_repeatable_and_an_unseeded_one_is_not() {
        let draw = |rng: &mut ChaCha20Rng| (0..20).map(|_| discrete_gaussian(rng, 100)).collect::<Vec<_>>();
        let a = draw(&mut rng());
        let b = draw(&mut rng());
        assert_eq!(a, b);
        let mut fresh = ChaCha20Rng::from_os_rng();
        let c = (0..20)
            .map(|_| discrete_gaussian(&mut fresh, 1_000_000))
            .collect::<Vec<_>>();
        assert_ne!(a, c);
    }

    #[test]
    #[should_panic(expected = "variance from 1")]
    fn a_variance_out_of_range_is_a_bug() {
        discrete_gaussian(&mut rng(), 0);
    }
}
