//! Clinical reference tables behind the generator: specialties, their case mix and their patients.

use super::rng::Categorical;

/// Who a specialty treats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeProfile {
    Adult,
    Children,
    Elderly,
    Maternity,
}

/// One treatment specialty and how its activity looks.
pub struct Specialty {
    pub code: &'static str,
    /// Relative volume among emergency admissions.
    pub emergency: f64,
    /// Relative volume among elective admissions.
    pub elective: f64,
    /// Relative volume among outpatient appointments.
    pub outpatient: f64,
    /// Share of elective admissions treated as day cases.
    pub day_case: f64,
    /// Median length of stay (days) of an ordinary admission.
    pub los_median: f64,
    pub ages: AgeProfile,
    /// Diagnoses: code, weight, usual procedure, chance the procedure is done.
    pub diagnoses: &'static [(&'static str, f64, Option<&'static str>, f64)],
}

/// The specialties the synthetic trusts provide, in `treatment_specialty` domain order.
pub const SPECIALTIES: &[Specialty] = &[
    Specialty {
        code: "100",
        emergency: 12.0,
        elective: 13.0,
        outpatient: 8.0,
        day_case: 0.55,
        los_median: 2.5,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("K35", 3.0, Some("H011"), 0.8),
            ("K40", 3.0, Some("T202"), 0.9),
            ("K80", 4.0, Some("J183"), 0.7),
            ("K92", 2.0, Some("G451"), 0.6),
            ("R69", 1.0, None, 0.0),
        ],
    },
    Specialty {
        code: "101",
        emergency: 3.0,
        elective: 10.0,
        outpatient: 6.0,
        day_case: 0.7,
        los_median: 1.5,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("N20", 4.0, Some("M459"), 0.5),
            ("N40", 3.0, Some("M651"), 0.6),
            ("C61", 2.0, Some("M459"), 0.4),
            ("N39", 2.0, None, 0.0),
        ],
    },
    Specialty {
        code: "110",
        emergency: 8.0,
        elective: 12.0,
        outpatient: 12.0,
        day_case: 0.3,
        los_median: 5.0,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("S72", 3.0, Some("W241"), 0.9),
            ("M16", 3.0, Some("W371"), 0.95),
            ("M17", 3.0, Some("W401"), 0.95),
        ],
    },
    Specialty {
        code: "120",
        emergency: 1.5,
        elective: 7.0,
        outpatient: 6.0,
        day_case: 0.6,
        los_median: 1.0,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("J35", 5.0, Some("F341"), 0.9),
            ("H66", 3.0, Some("D151"), 0.8),
            ("J06", 2.0, None, 0.0),
        ],
    },
    Specialty {
        code: "130",
        emergency: 0.5,
        elective: 14.0,
        outpatient: 14.0,
        day_case: 0.95,
        los_median: 1.0,
        ages: AgeProfile::Elderly,
        diagnoses: &[("H25", 8.0, Some("C751"), 0.95), ("H40", 2.0, Some("C606"), 0.6)],
    },
    Specialty {
        code: "300",
        emergency: 25.0,
        elective: 4.0,
        outpatient: 5.0,
        day_case: 0.3,
        los_median: 3.0,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("R07", 3.0, None, 0.0),
            ("J18", 3.0, None, 0.0),
            ("N39", 3.0, None, 0.0),
            ("R69", 2.0, None, 0.0),
            ("R55", 2.0, None, 0.0),
            ("A09", 2.0, None, 0.0),
            ("R50", 1.0, None, 0.0),
        ],
    },
    Specialty {
        code: "301",
        emergency: 5.0,
        elective: 12.0,
        outpatient: 7.0,
        day_case: 0.9,
        los_median: 3.0,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("K92", 3.0, Some("G451"), 0.8),
            ("K50", 2.0, Some("H221"), 0.6),
            ("K51", 2.0, Some("H221"), 0.6),
            ("C18", 1.0, Some("H221"), 0.7),
        ],
    },
    Specialty {
        code: "320",
        emergency: 10.0,
        elective: 7.0,
        outpatient: 9.0,
        day_case: 0.5,
        los_median: 3.0,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("I21", 3.0, Some("K751"), 0.6),
            ("I48", 3.0, None, 0.0),
            ("I50", 3.0, None, 0.0),
            ("R07", 2.0, Some("K634"), 0.4),
        ],
    },
    Specialty {
        code: "340",
        emergency: 10.0,
        elective: 2.0,
        outpatient: 5.0,
        day_case: 0.3,
        los_median: 4.0,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("J44", 4.0, None, 0.0),
            ("J18", 3.0, None, 0.0),
            ("J45", 2.0, None, 0.0),
            ("C34", 1.0, None, 0.0),
        ],
    },
    Specialty {
        code: "370",
        emergency: 2.0,
        elective: 10.0,
        outpatient: 6.0,
        day_case: 0.85,
        los_median: 4.0,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("C50", 3.0, Some("X352"), 0.9),
            ("C34", 3.0, Some("X352"), 0.8),
            ("C18", 2.0, Some("X352"), 0.8),
            ("C61", 1.0, Some("X352"), 0.7),
        ],
    },
    Specialty {
        code: "420",
        emergency: 8.0,
        elective: 3.0,
        outpatient: 6.0,
        day_case: 0.5,
        los_median: 1.0,
        ages: AgeProfile::Children,
        diagnoses: &[
            ("J06", 3.0, None, 0.0),
            ("A09", 3.0, None, 0.0),
            ("J45", 2.0, None, 0.0),
            ("R50", 2.0, None, 0.0),
            ("H66", 1.0, None, 0.0),
        ],
    },
    Specialty {
        code: "430",
        emergency: 15.0,
        elective: 0.5,
        outpatient: 3.0,
        day_case: 0.2,
        los_median: 4.5,
        ages: AgeProfile::Elderly,
        diagnoses: &[
            ("F05", 2.0, None, 0.0),
            ("J18", 3.0, None, 0.0),
            ("N39", 3.0, None, 0.0),
            ("R55", 2.0, None, 0.0),
            ("I50", 2.0, None, 0.0),
            ("S72", 1.0, Some("W241"), 0.7),
        ],
    },
    Specialty {
        code: "501",
        emergency: 0.0,
        elective: 0.0,
        outpatient: 4.0,
        day_case: 0.0,
        los_median: 1.5,
        ages: AgeProfile::Maternity,
        diagnoses: &[
            ("O80", 5.0, Some("R241"), 0.9),
            ("O82", 3.0, Some("R171"), 0.95),
            ("O47", 2.0, None, 0.0),
        ],
    },
    Specialty {
        code: "502",
        emergency: 2.0,
        elective: 8.0,
        outpatient: 9.0,
        day_case: 0.6,
        los_median: 1.0,
        ages: AgeProfile::Adult,
        diagnoses: &[
            ("N92", 3.0, Some("Q181"), 0.7),
            ("D25", 2.0, Some("Q073"), 0.6),
            ("N81", 2.0, None, 0.0),
        ],
    },
];

/// Index of the obstetrics specialty (maternity admissions).
pub const OBSTETRICS: usize = 12;

/// Age bands, in domain order.
pub const AGE_BANDS: &[&str] = &["0-4", "5-17", "18-29", "30-44", "45-59", "60-69", "70-79", "80+"];

/// Age-band choice for each profile.
pub struct AgeSamplers {
    adult: Categorical<usize>,
    children: Categorical<usize>,
    elderly: Categorical<usize>,
    maternity: Categorical<usize>,
    /// Emergency-department attenders (all ages).
    pub attenders: Categorical<usize>,
}

impl AgeSamplers {
    pub fn new() -> AgeSamplers {
        AgeSamplers {
            adult: Categorical::new(&[
                (0, 1.0),
                (1, 1.5),
                (2, 8.0),
                (3, 12.0),
                (4, 20.0),
                (5, 20.0),
                (6, 22.0),
                (7, 15.0),
            ]),
            children: Categorical::new(&[(0, 55.0), (1, 45.0)]),
            elderly: Categorical::new(&[(4, 6.0), (5, 14.0), (6, 35.0), (7, 45.0)]),
            maternity: Categorical::new(&[(2, 40.0), (3, 58.0), (4, 2.0)]),
            attenders: Categorical::new(&[
                (0, 9.0),
                (1, 11.0),
                (2, 18.0),
                (3, 17.0),
                (4, 15.0),
                (5, 9.0),
                (6, 10.0),
                (7, 11.0),
            ]),
        }
    }

    pub fn for_profile(&self, profile: AgeProfile) -> &Categorical<usize> {
        match profile {
            AgeProfile::Adult => &self.adult,
            AgeProfile::Children => &self.children,
            AgeProfile::Elderly => &self.elderly,
            AgeProfile::Maternity => &self.maternity,
        }
    }
}

impl Default for AgeSamplers {
    fn default() -> Self {
        Self::new()
    }
}

/// Length-of-stay multiplier for an age band: older people stay longer.
pub fn age_los_factor(age_band: usize) -> f64 {
    match age_band {
        0 | 1 => 0.6,
        6 => 1.3,
        7 => 1.6,
        _ => 1.0,
    }
}

/// IMD decile choice for a catchment with the given deprivation tilt (positive: more deprived).
pub fn imd_sampler(deprivation: f64) -> Categorical<i8> {
    let pairs = (1..=10i8)
        .map(|d| (d, (-deprivation * (f64::from(d) - 5.5) / 4.5).exp()))
        .collect::<Vec<_>>();
    Categorical::new(&pairs)
}
