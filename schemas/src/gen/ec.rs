//! Emergency care attendances, with the national four-hour standard's visible cliff.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int32Builder, Int8Builder, StringArray, StringBuilder, TimestampMicrosecondBuilder};
use rand::Rng;
use rand_distr::LogNormal;

use super::apc::AdmittedViaAe;
use super::clinical::{imd_sampler, AgeSamplers, AGE_BANDS};
use super::people::Population;
use super::rng::{emergency_day_weight, unit, Calendar, Categorical, GenRng};
use super::trust::TrustProfile;

/// Attendances not admitted, per attendance admitted through A&E (about 28% of attenders are admitted).
pub const ATTENDANCES_PER_ADMISSION: f64 = 2.57;

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_MINUTE: i64 = 60_000_000;

/// Draws emergency care attendances for one trust.
pub struct EcGenerator<'a> {
    trust: &'a TrustProfile,
    people: &'a Population,
    calendar: &'a Calendar,
    ages: AgeSamplers,
    day: Categorical<u32>,
    minute_of_day: Categorical<u32>,
    department: Categorical<&'static str>,
    disposal: Categorical<&'static str>,
    imd: Categorical<i8>,
}

impl<'a> EcGenerator<'a> {
    pub fn new(trust: &'a TrustProfile, people: &'a Population, calendar: &'a Calendar) -> Self {
        // Arrivals peak late morning and are fewest around 4-5am.
        let hours = (0..24 * 60)
            .map(|m| {
                let h = f64::from(m) / 60.0;
                (
                    m,
                    0.35 + (-(h - 11.5).powi(2) / 30.0).exp() + 0.4 * (-(h - 19.0).powi(2) / 12.0).exp(),
                )
            })
            .collect::<Vec<_>>();
        EcGenerator {
            trust,
            people,
            calendar,
            ages: AgeSamplers::new(),
            day: calendar.sampler(emergency_day_weight),
            minute_of_day: Categorical::new(&hours),
            department: Categorical::new(&[("01", 68.0), ("02", 4.0), ("03", 28.0)]),
            disposal: Categorical::new(&[
                ("discharged", 70.0),
                ("referred", 15.0),
                ("transferred", 2.0),
                ("left", 12.0),
                ("died", 0.05),
            ]),
            imd: imd_sampler(trust.deprivation + 0.4),
        }
    }

    /// Minutes in department: most leave before four hours, many just before it (the cliff), the rest breach.
    fn minutes(&self, rng: &mut GenRng, department: &str, admitted: bool) -> i32 {
        let breach_rate = match (department, admitted) {
            ("03", _) => 0.03,
            (_, true) => (self.trust.ae_breach_rate * 1.8).min(0.9),
            _ => self.trust.ae_breach_rate * 0.7,
        };
        if unit(rng) < breach_rate {
            let over = LogNormal::new(90f64.ln(), 0.9).expect("valid log-normal");
            return (240.0 + rng.sample(over)).min(2880.0) as i32;
        }
        if department != "03" && unit(rng) < 0.16 {
            return rng.random_range(220..240);
        }
        let median: f64 = if department == "03" { 70.0 } else { 150.0 };
        let within = LogNormal::new(median.ln(), 0.5).expect("valid log-normal");
        for _ in 0..8 {
            let m = rng.sample(within);
            if m < 240.0 {
                return m.max(5.0) as i32;
            }
        }
        rng.random_range(60..240)
    }

    /// One batch: an attendance for each A&E admission, plus the attendances that went home.
    pub fn batch(&self, rng: &mut GenRng, admitted: &[AdmittedViaAe]) -> Vec<ArrayRef> {
        let expected_others = admitted.len() as f64 * ATTENDANCES_PER_ADMISSION;
        let others = expected_others.floor() as usize + usize::from(unit(rng) < expected_others.fract());
        let rows = admitted.len() + others;
        let mut person = StringBuilder::with_capacity(rows, rows * 16);
        let mut arrival = TimestampMicrosecondBuilder::with_capacity(rows);
        let mut minutes = Int32Builder::with_capacity(rows);
        let mut department = StringBuilder::with_capacity(rows, rows * 2);
        let mut disposal = StringBuilder::with_capacity(rows, rows * 10);
        let mut age = StringBuilder::with_capacity(rows, rows * 5);
        let mut sex = StringBuilder::with_capacity(rows, rows);
        let mut imd = Int8Builder::with_capacity(rows);

        let arrival_at = |rng: &mut GenRng, day: u32| {
            i64::from(self.calendar.date32(day)) * MICROS_PER_DAY
                + i64::from(self.minute_of_day.sample(rng)) * MICROS_PER_MINUTE
                + rng.random_range(0..MICROS_PER_MINUTE)
        };
        for a in admitted {
            person.append_value(&a.person_id);
            arrival.append_value(arrival_at(rng, a.date_offset));
            minutes.append_value(self.minutes(rng, "01", true));
            department.append_value("01");
            disposal.append_value("admitted");
            age.append_value(AGE_BANDS[a.age_band]);
            sex.append_value(a.sex);
            imd.append_value(a.imd_decile);
        }
        for _ in 0..others {
            let dept = self.department.sample(rng);
            let day = self.day.sample(rng);
            person.append_value(self.people.draw(rng));
            arrival.append_value(arrival_at(rng, day));
            minutes.append_value(self.minutes(rng, dept, false));
            department.append_value(dept);
            disposal.append_value(self.disposal.sample(rng));
            age.append_value(AGE_BANDS[self.ages.attenders.sample(rng)]);
            sex.append_value(if unit(rng) < 0.51 { "F" } else { "M" });
            imd.append_value(self.imd.sample(rng));
        }
        vec![
            Arc::new(person.finish()),
            Arc::new(StringArray::from(vec![self.trust.code.as_str(); rows])),
            Arc::new(arrival.finish()),
            Arc::new(minutes.finish()),
            Arc::new(department.finish()),
            Arc::new(disposal.finish()),
            Arc::new(age.finish()),
            Arc::new(sex.finish()),
            Arc::new(imd.finish()),
        ]
    }
}
