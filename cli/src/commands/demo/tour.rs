//! The questions Tessera must answer (design §4), as the demo asks them; also the benchmark's workload.

/// The tour as asked of trusts in differential privacy mode (`private`) or not: with privacy,
/// length of stay is capped at 30 days before it is averaged, so that one long stay moves the
/// sum (and so the noise it needs) by 30 days, not the contract's 365. The cell key method
/// takes the measure as it is.
pub fn questions(private: bool) -> Vec<(&'static str, &'static str)> {
    TOUR.iter()
        .map(
            |&(title, sql)| match (private, PRIVATE_VARIANTS.iter().find(|(t, _, _)| *t == title)) {
                (true, Some(&(_, title, sql))) => (title, sql),
                _ => (title, sql),
            },
        )
        .collect()
}

/// (title in [`TOUR`], title and SQL under differential privacy).
const PRIVATE_VARIANTS: &[(&str, &str, &str)] = &[(
    MEAN_LOS,
    "Mean and standard deviation of length of stay, stays capped at 30 days, by specialty (emergency admissions)",
    "SELECT treatment_specialty, count(*) AS spells, round(avg(least(los_days, 30)), 2) AS mean_los, \
     round(stddev(least(los_days, 30)), 2) AS sd_los FROM apc_episodes WHERE admission_method LIKE '2%' \
     GROUP BY 1 HAVING count(*) >= 100 ORDER BY spells DESC LIMIT 6",
)];

const MEAN_LOS: &str = "Mean and standard deviation of length of stay by specialty (emergency admissions)";

/// The questions of the tour: a title and the SQL a researcher types.
pub const TOUR: &[(&str, &str)] = &[
    (
        "Admissions per trust per month (first quarter of 2024)",
        "SELECT provider_code, date_trunc('month', admission_date) AS month, count(*) AS admissions \
         FROM apc_episodes WHERE admission_date >= DATE '2024-01-01' AND admission_date < DATE '2024-04-01' \
         GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        MEAN_LOS,
        "SELECT treatment_specialty, count(*) AS spells, round(avg(los_days), 2) AS mean_los, \
         round(stddev(los_days), 2) AS sd_los FROM apc_episodes WHERE admission_method LIKE '2%' \
         GROUP BY 1 HAVING count(*) >= 100 ORDER BY mean_los DESC LIMIT 6",
    ),
    (
        "A&E four-hour performance by trust (type 1 departments)",
        "SELECT provider_code, count(*) AS attendances, \
         round(100.0 * avg(CASE WHEN minutes_in_department <= 240 THEN 1.0 ELSE 0.0 END), 1) AS pct_within_4h \
         FROM ec_attendances WHERE department_type = '01' GROUP BY 1 ORDER BY 1",
    ),
    (
        "Day-case rate of elective admissions by specialty",
        "SELECT treatment_specialty, count(*) AS electives, \
         round(100.0 * avg(CASE WHEN patient_class = '2' THEN 1.0 ELSE 0.0 END), 1) AS day_case_pct \
         FROM apc_episodes WHERE admission_method LIKE '1%' GROUP BY 1 ORDER BY day_case_pct DESC LIMIT 6",
    ),
    (
        "Outpatient did-not-attend rate by trust",
        "SELECT provider_code, count(*) AS appointments, \
         round(100.0 * avg(CASE WHEN attended = 'did_not_attend' THEN 1.0 ELSE 0.0 END), 2) AS dna_pct \
         FROM op_appointments GROUP BY 1 ORDER BY 1",
    ),
    (
        "Cost-weighted activity per FTE, per trust and month (productivity)",
        "WITH activity AS ( \
           SELECT a.provider_code, date_trunc('month', a.admission_date) AS month, sum(r.unit_cost_gbp) AS weighted_activity \
           FROM apc_episodes a JOIN ref_unit_costs r \
             ON a.treatment_specialty = r.treatment_specialty AND a.patient_class = r.patient_class \
           GROUP BY 1, 2), \
         staff AS (SELECT provider_code, month, sum(fte) AS fte FROM workforce_finance_monthly GROUP BY 1, 2) \
         SELECT activity.provider_code, CAST(activity.month AS DATE) AS month, \
                round(weighted_activity / fte, 1) AS gbp_activity_per_fte \
         FROM activity JOIN staff ON activity.provider_code = staff.provider_code AND CAST(activity.month AS DATE) = staff.month \
         WHERE staff.month >= DATE '2025-01-01' ORDER BY 1, 2",
    ),
    (
        "A cohort: emergency admissions of people over 70 by age band, sex and deprivation (largest cells)",
        "SELECT age_band, sex, imd_decile, count(*) AS admissions FROM apc_episodes \
         WHERE age_band IN ('70-79', '80+') AND admission_method LIKE '2%' \
         GROUP BY 1, 2, 3 ORDER BY admissions DESC, 1, 2, 3 LIMIT 8",
    ),
];
