//! The differential harness: over 3 and over 5 live nodes, every query's federated answer equals
//! single-node DataFusion over the union of the same data (floats within 1e-9 relative).

use tessera_support::{compare, rows_of, Federation};

const GROUPS: &[&str] = &[
    "",
    "provider_code",
    "sex",
    "age_band, sex",
    "treatment_specialty, patient_class",
    "primary_procedure",
    "date_trunc('month', admission_date)",
    "extract(year FROM admission_date), imd_decile",
    "CASE WHEN los_days > 7 THEN 'long' ELSE 'short' END",
];

const FILTERS: &[&str] = &[
    "",
    "WHERE admission_method LIKE '2%'",
    "WHERE los_days > 3",
    "WHERE imd_decile <= 3 AND sex = 'F'",
    "WHERE admission_date >= DATE '2024-01-01' AND admission_date < DATE '2024-07-01'",
    "WHERE primary_procedure IS NULL",
    "WHERE los_days > 100000",
];

const AGGREGATES: &[&str] = &[
    "count(*) AS n",
    "count(primary_procedure) AS with_procedure, sum(los_days) AS bed_days",
    "avg(los_days) AS mean_los, min(los_days) AS min_los, max(los_days) AS max_los",
    "sum(cost_gbp) AS cost, avg(cost_gbp) AS mean_cost",
    "var_samp(los_days) AS v, var_pop(cost_gbp) AS vp",
    "stddev(los_days) AS sd, stddev_pop(los_days) AS sdp",
    "corr(los_days, cost_gbp) AS r, covar_samp(los_days, cost_gbp) AS cs, covar_pop(los_days, cost_gbp) AS cp",
    "regr_slope(cost_gbp, los_days) AS slope, regr_intercept(cost_gbp, los_days) AS icpt, regr_r2(cost_gbp, los_days) AS r2, regr_count(cost_gbp, los_days) AS rn",
    "count(DISTINCT treatment_specialty) AS specialties, count(*) AS n",
    "bool_and(los_days >= 0) AS all_nonneg, bool_or(cost_gbp > 50000) AS any_costly",
    "count(*) FILTER (WHERE sex = 'F') AS women, avg(los_days) FILTER (WHERE age_band = '80+') AS los_80",
    "min(admission_date) AS first_day, max(discharge_date) AS last_day",
    "sum(DISTINCT imd_decile) AS s, count(DISTINCT imd_decile) AS c, avg(DISTINCT imd_decile) AS a, count(*) AS n",
];

/// Generated queries: every group-by set with every aggregate list, filters rotating.
fn generated() -> Vec<String> {
    let mut queries = Vec::new();
    for (i, groups) in GROUPS.iter().enumerate() {
        for (j, aggregates) in AGGREGATES.iter().enumerate() {
            if (i + j) % 2 == 1 {
                continue;
            }
            let filter = FILTERS[(i * 3 + j) % FILTERS.len()];
            let query = if groups.is_empty() {
                format!("SELECT {aggregates} FROM apc_episodes {filter}")
            } else {
                format!("SELECT {groups}, {aggregates} FROM apc_episodes {filter} GROUP BY {groups}")
            };
            queries.push(query);
        }
    }
    queries
}

/// Hand-written queries over the rest of the grammar; `true` when the ORDER BY is total.
const WRITTEN: &[(&str, bool)] = &[
    ("SELECT provider_code, treatment_specialty, count(*) AS spells, avg(los_days) AS mean_los, stddev(los_days) AS sd_los \
      FROM apc_episodes WHERE admission_method LIKE '2%' AND admission_date >= DATE '2024-04-01' \
      GROUP BY 1, 2 HAVING count(*) >= 10 ORDER BY mean_los DESC, 1, 2 LIMIT 20", true),
    ("SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band HAVING count(*) > 100 ORDER BY age_band", true),
    ("SELECT sex, avg(cost_gbp) AS c FROM apc_episodes GROUP BY sex HAVING avg(cost_gbp) > 0 ORDER BY c DESC, sex LIMIT 1", true),
    ("WITH monthly AS (SELECT provider_code, date_trunc('month', admission_date) AS month, count(*) AS n FROM apc_episodes GROUP BY 1, 2) \
      SELECT provider_code, avg(n) AS mean_monthly, max(n) AS peak FROM monthly GROUP BY provider_code ORDER BY provider_code", true),
    ("SELECT a.treatment_specialty, sum(r.unit_cost_gbp) AS tariff, count(*) AS n FROM apc_episodes a \
      JOIN ref_unit_costs r ON a.treatment_specialty = r.treatment_specialty AND a.patient_class = r.patient_class \
      GROUP BY 1 ORDER BY 1", true),
    ("WITH activity AS (SELECT a.provider_code, date_trunc('month', a.admission_date) AS month, sum(r.unit_cost_gbp) AS weighted \
         FROM apc_episodes a JOIN ref_unit_costs r ON a.treatment_specialty = r.treatment_specialty AND a.patient_class = r.patient_class \
         GROUP BY 1, 2), \
      staff AS (SELECT provider_code, month, sum(fte) AS fte FROM workforce_finance_monthly GROUP BY 1, 2) \
      SELECT activity.provider_code, activity.month, weighted / fte AS productivity FROM activity \
      JOIN staff ON activity.provider_code = staff.provider_code AND CAST(activity.month AS DATE) = staff.month \
      ORDER BY 1, 2", true),
    ("SELECT provider_code, n, rank() OVER (ORDER BY n DESC) AS position FROM \
      (SELECT provider_code, count(*) AS n FROM apc_episodes GROUP BY provider_code) t ORDER BY provider_code", true),
    ("SELECT 'apc' AS source, count(*) AS n FROM apc_episodes UNION ALL SELECT 'ec', count(*) FROM ec_attendances \
      UNION ALL SELECT 'op', count(*) FROM op_appointments", false),
    ("SELECT department_type, count(*) AS attendances, \
      avg(CASE WHEN minutes_in_department <= 240 THEN 1.0 ELSE 0.0 END) AS within_4h FROM ec_attendances GROUP BY 1", false),
    ("SELECT disposal, age_band, count(*) AS n, avg(minutes_in_department) AS mins FROM ec_attendances \
      WHERE arrival_time >= TIMESTAMP '2024-01-01 00:00:00' GROUP BY 1, 2", false),
    ("SELECT treatment_specialty, avg(CASE WHEN attended = 'did_not_attend' THEN 1.0 ELSE 0.0 END) AS dna_rate, \
      count(*) FILTER (WHERE first_attendance) AS firsts FROM op_appointments GROUP BY 1", false),
    ("SELECT treatment_specialty, avg(CASE WHEN patient_class = '2' THEN 1.0 ELSE 0.0 END) AS day_case_rate \
      FROM apc_episodes WHERE admission_method LIKE '1%' GROUP BY 1", false),
    ("SELECT age_band, sex, imd_decile, count(*) AS n FROM apc_episodes GROUP BY 1, 2, 3", false),
    ("SELECT e.provider_code, count(*) AS admitted_same_day FROM ec_attendances e JOIN apc_episodes a \
      ON e.person_id = a.person_id AND e.provider_code = a.provider_code \
      WHERE e.disposal = 'admitted' AND a.admission_method = '21' AND CAST(e.arrival_time AS DATE) = a.admission_date \
      GROUP BY 1", false),
    ("SELECT provider_code, count(DISTINCT person_id) AS patients, count(*) AS episodes FROM apc_episodes GROUP BY provider_code", false),
    ("SELECT staff_group, sum(fte) AS fte, sum(pay_cost_gbp) / sum(fte) AS pay_per_fte FROM workforce_finance_monthly GROUP BY 1", false),
    ("SELECT count(*) AS n, sum(los_days) AS s FROM apc_episodes WHERE los_days > 100000", false),
    ("SELECT sex, count(*) AS n FROM apc_episodes WHERE los_days > 100000 GROUP BY sex", false),
    ("SELECT max(n) AS biggest FROM (SELECT treatment_specialty, count(*) AS n FROM apc_episodes GROUP BY 1) t", false),
    ("SELECT x.sex, x.n, y.n AS emergencies FROM (SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex) x \
      LEFT JOIN (SELECT sex, count(*) AS n FROM apc_episodes WHERE admission_method LIKE '2%' GROUP BY sex) y ON x.sex = y.sex", false),
    ("SELECT count(*) AS n FROM (SELECT admission_date, los_days FROM apc_episodes UNION ALL SELECT appointment_date, 0 FROM op_appointments) u \
      WHERE admission_date >= DATE '2024-06-01'", false),
    ("SELECT round(avg(los_days), 3) AS r, count(*) * 2 AS doubled, sum(los_days) / count(*) AS ratio FROM apc_episodes", false),
    ("SELECT treatment_specialty, unit_cost_gbp FROM ref_unit_costs WHERE patient_class = '1'", false),
    ("SELECT age_band, sex, count(*) AS n, sum(los_days) AS s, min(los_days) AS lo, max(admission_date) AS last_day \
      FROM apc_episodes GROUP BY ROLLUP(age_band, sex)", false),
    ("SELECT provider_code, patient_class, count(*) AS n, sum(cost_gbp) AS cost FROM apc_episodes \
      WHERE admission_method LIKE '1%' GROUP BY CUBE(provider_code, patient_class)", false),
    ("SELECT sex, imd_decile, count(*) AS n FROM apc_episodes GROUP BY GROUPING SETS ((sex), (imd_decile), ())", false),
];

async fn check_all(fed: &Federation, label: &str) -> usize {
    let mut queries = generated().into_iter().map(|q| (q, false)).collect::<Vec<_>>();
    queries.extend(WRITTEN.iter().map(|(q, ordered)| (q.to_string(), *ordered)));
    let mut failures = Vec::new();
    for (sql, ordered) in &queries {
        let expected = match fed.reference(sql).await {
            Ok(batches) => rows_of(&batches),
            Err(e) => {
                failures.push(format!("{sql}\n  reference failed: {e}"));
                continue;
            }
        };
        match fed.coordinator.query(sql).await {
            Ok(result) => {
                if let Err(diff) = compare(&rows_of(&result.batches), &expected, *ordered) {
                    failures.push(format!("{sql}\n  {diff}"));
                } else if !sql.contains("FROM ref_unit_costs WHERE")
                    && result.provenance.answered().len() != fed.nodes.len()
                {
                    failures.push(format!("{sql}\n  provenance: {}", result.provenance.summary()));
                }
            }
            Err(e) => failures.push(format!("{sql}\n  federated query failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{label}: {} of {} queries differ from single-node DataFusion:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
    queries.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_answers_equal_single_node_datafusion_over_three_trusts() {
    let fed = Federation::start(&["RRK", "RTH", "RJ1"], 4_000, 13).await;
    assert!(check_all(&fed, "3 trusts").await >= 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federated_answers_equal_single_node_datafusion_over_five_trusts() {
    let fed = Federation::start(&["RRK", "RTH", "RJ1", "RR8", "RX1"], 5_000, 17).await;
    assert!(check_all(&fed, "5 trusts").await >= 80);
}
