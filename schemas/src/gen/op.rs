//! Outpatient appointments, with did-not-attend rates that rise with deprivation.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanBuilder, Date32Builder, StringArray, StringBuilder};

use super::clinical::{imd_sampler, AgeSamplers, AGE_BANDS, SPECIALTIES};
use super::people::Population;
use super::rng::{elective_day_weight, unit, Calendar, Categorical, GenRng};
use super::trust::TrustProfile;

/// Outpatient appointments per admitted episode.
pub const APPOINTMENTS_PER_EPISODE: f64 = 1.2;

/// Draws outpatient appointments for one trust.
pub struct OpGenerator<'a> {
    trust: &'a TrustProfile,
    people: &'a Population,
    calendar: &'a Calendar,
    ages: AgeSamplers,
    specialty: Categorical<usize>,
    day: Categorical<u32>,
    imd: Categorical<i8>,
}

impl<'a> OpGenerator<'a> {
    pub fn new(trust: &'a TrustProfile, people: &'a Population, calendar: &'a Calendar) -> Self {
        let specialty = SPECIALTIES
            .iter()
            .enumerate()
            .map(|(i, s)| (i, s.outpatient * trust.specialty_tilt[i]))
            .collect::<Vec<_>>();
        OpGenerator {
            trust,
            people,
            calendar,
            ages: AgeSamplers::new(),
            specialty: Categorical::new(&specialty),
            day: calendar.sampler(elective_day_weight),
            imd: imd_sampler(trust.deprivation),
        }
    }

    /// Generates `rows` appointments as Arrow columns in contract order.
    pub fn batch(&self, rng: &mut GenRng, rows: usize) -> Vec<ArrayRef> {
        let mut person = StringBuilder::with_capacity(rows, rows * 16);
        let mut date = Date32Builder::with_capacity(rows);
        let mut specialty = StringBuilder::with_capacity(rows, rows * 3);
        let mut first = BooleanBuilder::with_capacity(rows);
        let mut attended = StringBuilder::with_capacity(rows, rows * 10);
        let mut age = StringBuilder::with_capacity(rows, rows * 5);
        let mut sex = StringBuilder::with_capacity(rows, rows);
        for _ in 0..rows {
            let spec = &SPECIALTIES[self.specialty.sample(rng)];
            let age_band = self.ages.for_profile(spec.ages).sample(rng);
            let decile = self.imd.sample(rng);
            // Young adults and deprived areas miss more appointments.
            let mut dna = self.trust.dna_rate * (1.0 + 0.07 * (5.5 - f64::from(decile)));
            if matches!(age_band, 2 | 3) {
                dna *= 1.4;
            }
            let outcome = match unit(rng) {
                u if u < dna => "did_not_attend",
                u if u < dna + 0.06 => "patient_cancelled",
                u if u < dna + 0.11 => "hospital_cancelled",
                _ => "attended",
            };
            person.append_value(self.people.draw(rng));
            date.append_value(self.calendar.date32(self.day.sample(rng)));
            specialty.append_value(spec.code);
            first.append_value(unit(rng) < 0.35);
            attended.append_value(outcome);
            age.append_value(AGE_BANDS[age_band]);
            sex.append_value(if spec.code == "501" || spec.code == "502" || unit(rng) < 0.54 {
                "F"
            } else {
                "M"
            });
        }
        vec![
            Arc::new(person.finish()),
            Arc::new(StringArray::from(vec![self.trust.code.as_str(); rows])),
            Arc::new(date.finish()),
            Arc::new(specialty.finish()),
            Arc::new(first.finish()),
            Arc::new(attended.finish()),
            Arc::new(age.finish()),
            Arc::new(sex.finish()),
        ]
    }
}
