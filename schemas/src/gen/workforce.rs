//! Monthly workforce and finance returns, consistent with each trust's activity.

use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Builder, Float64Builder, StringBuilder};
use rand::Rng;

use super::rng::{Calendar, GenRng};
use super::trust::TrustProfile;

/// Staff group, share of whole-time equivalents, monthly pay per FTE (GBP), non-pay per FTE (GBP).
const STAFF_GROUPS: &[(&str, f64, f64, f64)] = &[
    ("medical", 0.13, 9_800.0, 1_900.0),
    ("nursing", 0.35, 3_700.0, 900.0),
    ("ahp", 0.08, 3_600.0, 600.0),
    ("scientific", 0.07, 3_900.0, 2_400.0),
    ("support", 0.20, 2_350.0, 300.0),
    ("admin", 0.17, 3_100.0, 1_500.0),
];

/// FTE per admitted episode per month: a trust with 12,500 episodes a month employs about 10,000 FTE.
const FTE_PER_MONTHLY_EPISODE: f64 = 0.8;

/// One row per month and staff group, as Arrow columns in contract order.
pub fn generate(trust: &TrustProfile, calendar: &Calendar, apc_rows: u64, rng: &mut GenRng) -> Vec<ArrayRef> {
    let months = calendar.months();
    let monthly_episodes = apc_rows as f64 / months.len() as f64;
    let rows = months.len() * STAFF_GROUPS.len();
    let mut provider = StringBuilder::with_capacity(rows, rows * 3);
    let mut month = Date32Builder::with_capacity(rows);
    let mut group = StringBuilder::with_capacity(rows, rows * 8);
    let mut fte = Float64Builder::with_capacity(rows);
    let mut pay = Float64Builder::with_capacity(rows);
    let mut non_pay = Float64Builder::with_capacity(rows);
    for (i, (_, day)) in months.iter().enumerate() {
        // Staff numbers grow about 3% a year; pay rises with the April award.
        let growth = 1.0 + 0.0025 * i as f64;
        let award = if i >= 12 { 1.055 } else { 1.0 };
        for (name, share, pay_per_fte, non_pay_per_fte) in STAFF_GROUPS {
            let staff = monthly_episodes
                * FTE_PER_MONTHLY_EPISODE
                * trust.staffing
                * share
                * growth
                * rng.random_range(0.97..1.03);
            let round2 = |x: f64| (x * 100.0).round() / 100.0;
            provider.append_value(&trust.code);
            month.append_value(*day);
            group.append_value(*name);
            fte.append_value(round2(staff));
            pay.append_value(round2(staff * pay_per_fte * award * rng.random_range(0.98..1.02)));
            non_pay.append_value(round2(staff * non_pay_per_fte * rng.random_range(0.9..1.1)));
        }
    }
    vec![
        Arc::new(provider.finish()),
        Arc::new(month.finish()),
        Arc::new(group.finish()),
        Arc::new(fte.finish()),
        Arc::new(pay.finish()),
        Arc::new(non_pay.finish()),
    ]
}
