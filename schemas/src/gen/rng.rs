//! Deterministic randomness: seeded streams, weighted choices and calendars.

use chrono::{Datelike, NaiveDate};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator's random stream. ChaCha8 gives the same numbers on every platform and build.
pub type GenRng = ChaCha8Rng;

/// A stream seeded from the run's seed and a label (e.g. `"RRK/apc_episodes"`), so every
/// trust and table gets an independent stream and adding one does not shift another.
pub fn stream(seed: u64, label: &str) -> GenRng {
    // FNV-1a over the label, mixed with the seed by SplitMix64.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    GenRng::seed_from_u64(splitmix(seed ^ splitmix(h)))
}

/// SplitMix64 finaliser: a cheap, well-mixed bijection on u64.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A weighted choice among fixed codes.
#[derive(Debug, Clone)]
pub struct Categorical<T: Copy> {
    items: Vec<T>,
    index: WeightedIndex<f64>,
}

impl<T: Copy> Categorical<T> {
    /// Builds the choice; weights need not sum to one. Panics on an empty or all-zero table (a bug in our tables).
    pub fn new(pairs: &[(T, f64)]) -> Self {
        let items = pairs.iter().map(|(t, _)| *t).collect();
        let index = WeightedIndex::new(pairs.iter().map(|(_, w)| w.max(0.0))).expect("weights are positive");
        Categorical { items, index }
    }

    /// Draws one item.
    pub fn sample(&self, rng: &mut GenRng) -> T {
        self.items[self.index.sample(rng)]
    }
}

/// The period the synthetic data covers: two financial years, April 2023 to March 2025.
pub struct Calendar {
    pub first_day: NaiveDate,
    pub days: u32,
}

impl Calendar {
    pub fn standard() -> Calendar {
        let first_day = NaiveDate::from_ymd_opt(2023, 4, 1).expect("valid date");
        let last = NaiveDate::from_ymd_opt(2025, 4, 1).expect("valid date");
        Calendar {
            first_day,
            days: (last - first_day).num_days() as u32,
        }
    }

    /// The date `offset` days after the first day.
    pub fn day(&self, offset: u32) -> NaiveDate {
        self.first_day + chrono::Days::new(u64::from(offset))
    }

    /// Days since 1970-01-01 (Arrow `Date32`) of the day `offset` days in.
    pub fn date32(&self, offset: u32) -> i32 {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        (self.day(offset) - epoch).num_days() as i32
    }

    /// First days of each month in the period, as `Date32`.
    pub fn months(&self) -> Vec<(NaiveDate, i32)> {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        let mut out = Vec::new();
        let mut d = self.first_day;
        while d < self.day(self.days) {
            out.push((d, (d - epoch).num_days() as i32));
            d = d.checked_add_months(chrono::Months::new(1)).expect("valid date");
        }
        out
    }

    /// A day sampler whose weights come from `weight(date)`.
    pub fn sampler(&self, weight: impl Fn(NaiveDate) -> f64) -> Categorical<u32> {
        let pairs = (0..self.days).map(|o| (o, weight(self.day(o)))).collect::<Vec<_>>();
        Categorical::new(&pairs)
    }
}

/// Emergency demand: a winter peak and a Monday peak.
pub fn emergency_day_weight(d: NaiveDate) -> f64 {
    let season = 1.0 + 0.15 * (2.0 * std::f64::consts::PI * (f64::from(d.ordinal()) - 15.0) / 365.25).cos();
    let weekday = match d.weekday().num_days_from_monday() {
        0 => 1.12,
        1..=4 => 1.0,
        5 => 0.92,
        _ => 0.9,
    };
    season * weekday
}

/// Planned activity: weekdays, with August and Christmas dips.
pub fn elective_day_weight(d: NaiveDate) -> f64 {
    let weekday = match d.weekday().num_days_from_monday() {
        0..=4 => 1.0,
        5 => 0.12,
        _ => 0.04,
    };
    let month = match (d.month(), d.day()) {
        (8, _) => 0.85,
        (12, 22..) | (1, 1) => 0.45,
        _ => 1.0,
    };
    weekday * month
}

/// A person identifier: 16 hex digits derived from the run's seed and the person's number.
pub fn person_id(seed: u64, person: u64) -> String {
    format!("{:016x}", splitmix(seed.rotate_left(17) ^ splitmix(person)))
}

/// A uniform number in `[0, 1)`.
pub fn unit(rng: &mut GenRng) -> f64 {
    rng.random::<f64>()
}
