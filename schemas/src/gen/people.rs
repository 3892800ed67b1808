//! The population a trust serves: who turns up, how often.

use super::rng::{person_id, unit, GenRng};

/// A trust's patients: a local pool (some people come often) plus a small pool shared by all trusts.
pub struct Population {
    seed: u64,
    local_start: u64,
    local_size: u64,
    shared_size: u64,
}

/// Share of a trust's activity from people who also use other trusts.
const SHARED_SHARE: f64 = 0.03;
/// Where the shared pool's person numbers begin (far above any local pool).
const SHARED_START: u64 = 1 << 48;

impl Population {
    pub fn new(seed: u64, local_start: u64, local_size: u64, shared_size: u64) -> Population {
        Population {
            seed,
            local_start,
            local_size: local_size.max(1),
            shared_size: shared_size.max(1),
        }
    }

    /// Draws a person, skewed so that a few people account for many contacts.
    pub fn draw(&self, rng: &mut GenRng) -> String {
        let skewed = |size: u64, u: f64| ((size as f64) * u.powf(1.6)) as u64 % size;
        let person = if unit(rng) < SHARED_SHARE {
            SHARED_START + skewed(self.shared_size, unit(rng))
        } else {
            self.local_start + skewed(self.local_size, unit(rng))
        };
        person_id(self.seed, person)
    }
}
