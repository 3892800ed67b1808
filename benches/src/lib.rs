//! Shared helpers for Tessera's benchmark binaries: timing summaries and table output.

use std::time::Duration;

/// Median and 95th percentile of a set of timings, in milliseconds.
pub fn summarise(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.95))
}
