//! The noise of the cell key method, as a function of a value and its cell's key only: the same
//! records always get the same noise (so repeating or re-spelling a question learns nothing),
//! and different records get unrelated noise (so differences of two cells are noisy).
//!
//! **Counts** (the ptable). A count `n` at or above the threshold `t` changes by `v`, where
//! `m = min(D, n - t)`; with probability `p_stay` (or when `m = 0`) `v = 0`, otherwise `v` is
//! uniform on `{-m, …, -1, 1, …, m}`. So `E[v] = 0` (unbiased), `|v| ≤ D`, `n + v ≥ t` (no count
//! below the threshold is ever shown), and for `n ≥ t + D`
//! `Var[v] = (1 - p_stay)(D + 1)(2D + 1)/6` (D = 3, p_stay = 0.5: 2.33, sd 1.53).
//!
//! **Sums** of a measure over `n` contributors change by `(S / n) · v + s · x₁ · z`: `v` the
//! count noise of the contributors (so a sum of equal values is exactly as protected as their
//! count), `x₁` the largest contribution, `s` the magnitude scale and `z` uniform on [-1, 1]
//! (`E = 0`): a total less its released parts gives a dominant contribution back only to within
//! about `s` of itself.
//! **Means** are perturbed sums over perturbed counts. **Variances and models** are scaled by
//! `1 + s · z · √(t / n)`: at most `s` at the threshold, less with more records.

/// Salts that keep the noises of one cell's count, sum and other statistics unrelated.
pub const COUNT: u64 = 0x636f_756e_7473_0001;
pub const SUM: u64 = 0x7375_6d73_0000_0002;
pub const SCALE: u64 = 0x7363_616c_6500_0003;

/// The noise parameters (`[disclosure] noise_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    pub threshold: i64,
    pub max: i64,
    pub stay: f64,
    pub magnitude: f64,
}

/// A number uniform on [0, 1) drawn from `key` (SplitMix64 finaliser over the salted key).
pub fn uniform(key: u64, salt: u64) -> f64 {
    let mut z = key ^ salt;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Noise {
    /// The change to a count `n` (at least the threshold) of the cell with `key`. As in the ABS
    /// method's p-table, the draw depends on the value as well as the cell key: two counts of one
    /// cell (`count(*)` and `count(DISTINCT person_id)`, say) get independent noise, so their
    /// difference is not exact; the same count of the same cell always gets the same noise.
    pub fn count(&self, n: i64, key: u64) -> i64 {
        let m = self.max.min(n - self.threshold).max(0);
        let u = uniform(key ^ (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), COUNT);
        if m == 0 || u < self.stay {
            return 0;
        }
        let w = (u - self.stay) / (1.0 - self.stay);
        let step = ((w * (2 * m) as f64) as i64).min(2 * m - 1);
        if step < m {
            -(step + 1)
        } else {
            step - m + 1
        }
    }

    /// The change to a sum whose largest contribution is `largest`.
    pub fn sum(&self, largest: f64, key: u64) -> f64 {
        self.magnitude * largest.abs() * (2.0 * uniform(key, SUM) - 1.0)
    }

    /// The factor a variance or model statistic over `n` records is multiplied by.
    pub fn scale(&self, n: f64, key: u64) -> f64 {
        let shrink = (self.threshold as f64 / n.max(1.0)).sqrt().min(1.0);
        1.0 + self.magnitude * shrink * (2.0 * uniform(key, SCALE) - 1.0)
    }
}
