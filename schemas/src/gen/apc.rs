//! Admitted patient care episodes.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Builder, Float64Builder, Int32Builder, Int8Builder, StringArray, StringBuilder};
use rand::Rng;
use rand_distr::LogNormal;

use super::clinical::{age_los_factor, imd_sampler, AgeProfile, AgeSamplers, AGE_BANDS, OBSTETRICS, SPECIALTIES};
use super::people::Population;
use super::rng::{elective_day_weight, emergency_day_weight, unit, Calendar, Categorical, GenRng};
use super::trust::TrustProfile;

/// An emergency admission that came through A&E: the A&E table gets the matching attendance.
pub struct AdmittedViaAe {
    pub person_id: String,
    pub date_offset: u32,
    pub age_band: usize,
    pub sex: &'static str,
    pub imd_decile: i8,
}

#[derive(Clone, Copy)]
enum Kind {
    Emergency,
    Elective,
    Maternity,
    Transfer,
}

/// Draws admitted patient care episodes for one trust.
pub struct ApcGenerator<'a> {
    trust: &'a TrustProfile,
    people: &'a Population,
    calendar: &'a Calendar,
    unit_costs: &'a HashMap<(String, String), f64>,
    ages: AgeSamplers,
    kind: Categorical<u8>,
    emergency_specialty: Categorical<usize>,
    elective_specialty: Categorical<usize>,
    emergency_method: Categorical<&'static str>,
    elective_method: Categorical<&'static str>,
    diagnosis: Vec<Categorical<usize>>,
    emergency_day: Categorical<u32>,
    elective_day: Categorical<u32>,
    imd: Categorical<i8>,
    emergency_imd: Categorical<i8>,
}

impl<'a> ApcGenerator<'a> {
    pub fn new(
        trust: &'a TrustProfile,
        people: &'a Population,
        calendar: &'a Calendar,
        unit_costs: &'a HashMap<(String, String), f64>,
    ) -> Self {
        let tilted = |f: fn(&super::clinical::Specialty) -> f64| {
            SPECIALTIES
                .iter()
                .enumerate()
                .map(|(i, s)| (i, f(s) * trust.specialty_tilt[i]))
                .collect::<Vec<_>>()
        };
        let maternity = 0.04;
        let transfer = 0.02;
        let emergency = trust.emergency_share;
        ApcGenerator {
            trust,
            people,
            calendar,
            unit_costs,
            ages: AgeSamplers::new(),
            kind: Categorical::new(&[
                (0, emergency),
                (1, 1.0 - emergency - maternity - transfer),
                (2, maternity),
                (3, transfer),
            ]),
            emergency_specialty: Categorical::new(&tilted(|s| s.emergency)),
            elective_specialty: Categorical::new(&tilted(|s| s.elective)),
            emergency_method: Categorical::new(&[
                ("21", 65.0),
                ("22", 20.0),
                ("23", 3.0),
                ("24", 7.0),
                ("25", 2.0),
                ("28", 3.0),
            ]),
            elective_method: Categorical::new(&[("11", 70.0), ("12", 20.0), ("13", 10.0)]),
            diagnosis: SPECIALTIES
                .iter()
                .map(|s| {
                    Categorical::new(
                        &s.diagnoses
                            .iter()
                            .enumerate()
                            .map(|(i, d)| (i, d.1))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect(),
            emergency_day: calendar.sampler(emergency_day_weight),
            elective_day: calendar.sampler(elective_day_weight),
            imd: imd_sampler(trust.deprivation),
            emergency_imd: imd_sampler(trust.deprivation + 0.4),
        }
    }

    /// Generates `rows` episodes as Arrow columns (contract order) and the A&E-admitted subset.
    pub fn batch(&self, rng: &mut GenRng, rows: usize) -> (Vec<ArrayRef>, Vec<AdmittedViaAe>) {
        let mut person = StringBuilder::with_capacity(rows, rows * 16);
        let mut admission = Date32Builder::with_capacity(rows);
        let mut discharge = Date32Builder::with_capacity(rows);
        let mut los = Int32Builder::with_capacity(rows);
        let mut method = StringBuilder::with_capacity(rows, rows * 2);
        let mut class = StringBuilder::with_capacity(rows, rows);
        let mut specialty = StringBuilder::with_capacity(rows, rows * 3);
        let mut diagnosis = StringBuilder::with_capacity(rows, rows * 3);
        let mut procedure = StringBuilder::with_capacity(rows, rows * 4);
        let mut sex = StringBuilder::with_capacity(rows, rows);
        let mut age = StringBuilder::with_capacity(rows, rows * 5);
        let mut imd = Int8Builder::with_capacity(rows);
        let mut cost = Float64Builder::with_capacity(rows);
        let mut admitted_via_ae = Vec::new();

        for _ in 0..rows {
            let kind = match self.kind.sample(rng) {
                0 => Kind::Emergency,
                1 => Kind::Elective,
                2 => Kind::Maternity,
                _ => Kind::Transfer,
            };
            let (spec_idx, method_code, day) = match kind {
                Kind::Emergency => (
                    self.emergency_specialty.sample(rng),
                    self.emergency_method.sample(rng),
                    self.emergency_day.sample(rng),
                ),
                Kind::Elective => (
                    self.elective_specialty.sample(rng),
                    self.elective_method.sample(rng),
                    self.elective_day.sample(rng),
                ),
                Kind::Maternity => (
                    OBSTETRICS,
                    if unit(rng) < 0.7 { "31" } else { "32" },
                    self.emergency_day.sample(rng),
                ),
                Kind::Transfer => (
                    self.emergency_specialty.sample(rng),
                    "81",
                    self.emergency_day.sample(rng),
                ),
            };
            let spec = &SPECIALTIES[spec_idx];
            let age_band = self.ages.for_profile(spec.ages).sample(rng);
            let sex_code = match spec.ages {
                AgeProfile::Maternity => "F",
                _ if spec.code == "502" => "F",
                _ if spec.code == "101" => {
                    if unit(rng) < 0.8 {
                        "M"
                    } else {
                        "F"
                    }
                }
                _ => {
                    if unit(rng) < 0.52 {
                        "F"
                    } else {
                        "M"
                    }
                }
            };
            let decile = match kind {
                Kind::Emergency => self.emergency_imd.sample(rng),
                _ => self.imd.sample(rng),
            };
            let class_code = match kind {
                Kind::Elective if unit(rng) < spec.day_case => {
                    if spec.code == "370" && unit(rng) < 0.4 {
                        "3"
                    } else {
                        "2"
                    }
                }
                _ => "1",
            };
            let stay = if class_code == "1" {
                let mut median = spec.los_median * age_los_factor(age_band) * self.trust.los_factor;
                if matches!(kind, Kind::Emergency | Kind::Transfer) {
                    median *= 1.3;
                }
                let dist = LogNormal::new(median.ln(), 0.9).expect("valid log-normal");
                (rng.sample(dist).floor() as i32).min(365)
            } else {
                0
            };
            let (diag, _, proc_code, proc_chance) = spec.diagnoses[self.diagnosis[spec_idx].sample(rng)];
            let proc_done = proc_code.filter(|_| unit(rng) < proc_chance);
            let unit_cost = self
                .unit_costs
                .get(&(spec.code.to_string(), class_code.to_string()))
                .copied()
                .unwrap_or(2500.0);
            let spread = LogNormal::new(0.0, 0.35).expect("valid log-normal");
            let mut episode_cost = unit_cost * rng.sample(spread) + f64::from((stay - 5).max(0)) * 420.0;
            if proc_done.is_some() {
                episode_cost *= 1.25;
            }
            if unit(rng) < 0.0005 {
                // A rare critical-care stay: a few very expensive episodes per trust.
                episode_cost *= rng.random_range(15.0..40.0);
            }
            let episode_cost = (episode_cost.clamp(0.0, 250_000.0) * 100.0).round() / 100.0;

            let who = self.people.draw(rng);
            if method_code == "21" {
                admitted_via_ae.push(AdmittedViaAe {
                    person_id: who.clone(),
                    date_offset: day,
                    age_band,
                    sex: sex_code,
                    imd_decile: decile,
                });
            }
            let start = self.calendar.date32(day);
            person.append_value(who);
            admission.append_value(start);
            discharge.append_value(start + stay);
            los.append_value(stay);
            method.append_value(method_code);
            class.append_value(class_code);
            specialty.append_value(spec.code);
            diagnosis.append_value(diag);
            procedure.append_option(proc_done);
            sex.append_value(sex_code);
            age.append_value(AGE_BANDS[age_band]);
            imd.append_value(decile);
            cost.append_value(episode_cost);
        }
        let provider: ArrayRef = Arc::new(StringArray::from(vec![self.trust.code.as_str(); rows]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(person.finish()),
            provider,
            Arc::new(admission.finish()),
            Arc::new(discharge.finish()),
            Arc::new(los.finish()),
            Arc::new(method.finish()),
            Arc::new(class.finish()),
            Arc::new(specialty.finish()),
            Arc::new(diagnosis.finish()),
            Arc::new(procedure.finish()),
            Arc::new(sex.finish()),
            Arc::new(age.finish()),
            Arc::new(imd.finish()),
            Arc::new(cost.finish()),
        ];
        (columns, admitted_via_ae)
    }
}
