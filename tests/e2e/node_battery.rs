//! A battery of queries sent to a running node over Flight: allowed aggregates with answers
//! computed independently from the Parquet files, and refused attempts with their exact reasons.

use tessera_node::audit::{verify, AuditEntry, Decision};
use tessera_support::*;
use tonic::Code;

/// Node policy for the battery: a low group cap so near-unique groupings are refused.
const MAX_GROUPS: usize = 50;

fn row(cells: Vec<Cell>) -> Vec<Cell> {
    cells
}

/// Allowed queries and their independently computed answers: (sql, rows, ordered).
fn allowed(o: &Oracle) -> Vec<(&'static str, Vec<Vec<Cell>>, bool)> {
    let apc: Vec<&Apc> = o.apc.iter().collect();
    let emergency = |a: &&Apc| a.admission_method.starts_with('2');
    let count_where = |f: &dyn Fn(&Apc) -> bool| o.apc.iter().filter(|a| f(a)).count();
    let los: Vec<f64> = o.apc.iter().map(|a| f64::from(a.los_days)).collect();
    let persons = o
        .apc
        .iter()
        .map(|a| a.person_id.as_str())
        .collect::<std::collections::BTreeSet<_>>();
    let by_month = group_by(
        &o.apc,
        |a| a.admission_date.format("%Y-%m-01T00:00:00").to_string(),
        |g| g.len(),
    );
    let diagnosis_over_100 = group_by(&o.apc, |a| a.primary_diagnosis.clone(), |g| g.len())
        .into_iter()
        .filter(|(_, n)| *n > 100)
        .map(|(d, n)| row(vec![d.into(), n.into()]))
        .collect::<Vec<_>>();
    assert!(
        !diagnosis_over_100.is_empty(),
        "test data too small for the HAVING case"
    );

    vec![
        (
            "SELECT count(*) FROM apc_episodes",
            vec![row(vec![o.apc.len().into()])],
            false,
        ),
        (
            "SELECT count(*) AS n FROM apc_episodes WHERE admission_method LIKE '2%'",
            vec![row(vec![apc.iter().filter(|a| emergency(a)).count().into()])],
            false,
        ),
        (
            "SELECT sex, count(*) FROM apc_episodes GROUP BY sex",
            group_by(&o.apc, |a| a.sex.clone(), |g| g.len())
                .into_iter()
                .map(|(k, n)| row(vec![k.into(), n.into()]))
                .collect(),
            false,
        ),
        (
            "SELECT age_band, sum(los_days) FROM apc_episodes GROUP BY age_band",
            group_by(
                &o.apc,
                |a| a.age_band.clone(),
                |g| g.iter().map(|a| i64::from(a.los_days)).sum::<i64>(),
            )
            .into_iter()
            .map(|(k, s)| row(vec![k.into(), s.into()]))
            .collect(),
            false,
        ),
        (
            "SELECT treatment_specialty, avg(los_days) FROM apc_episodes GROUP BY 1",
            group_by(
                &o.apc,
                |a| a.treatment_specialty.clone(),
                |g| fsum(g, |a| f64::from(a.los_days)) / g.len() as f64,
            )
            .into_iter()
            .map(|(k, m)| row(vec![k.into(), m.into()]))
            .collect(),
            false,
        ),
        (
            "SELECT sum(cost_gbp) FROM apc_episodes WHERE patient_class = '2'",
            vec![row(vec![fsum(
                &apc.iter()
                    .copied()
                    .filter(|a| a.patient_class == "2")
                    .collect::<Vec<_>>(),
                |a| a.cost_gbp,
            )
            .into()])],
            false,
        ),
        (
            "SELECT count(DISTINCT person_id) FROM apc_episodes",
            vec![row(vec![persons.len().into()])],
            false,
        ),
        (
            "SELECT count(person_id) FROM apc_episodes WHERE person_id IS NOT NULL",
            vec![row(vec![o.apc.len().into()])],
            false,
        ),
        (
            "SELECT var_samp(los_days), stddev_pop(los_days) FROM apc_episodes",
            vec![row(vec![
                variance(&los, true).into(),
                variance(&los, false).sqrt().into(),
            ])],
            false,
        ),
        (
            "SELECT imd_decile, count(*) FROM apc_episodes WHERE age_band IN ('70-79', '80+') GROUP BY imd_decile",
            group_by(
                &o.apc
                    .iter()
                    .filter(|a| a.age_band == "70-79" || a.age_band == "80+")
                    .cloned()
                    .collect::<Vec<_>>(),
                |a| a.imd_decile,
                |g| g.len(),
            )
            .into_iter()
            .map(|(k, n)| row(vec![i64::from(k).into(), n.into()]))
            .collect(),
            false,
        ),
        (
            "SELECT count(*) FROM ec_attendances WHERE minutes_in_department <= 240",
            vec![row(vec![o.ec.iter().filter(|e| e.minutes <= 240).count().into()])],
            false,
        ),
        (
            "SELECT disposal, count(*) FROM ec_attendances GROUP BY disposal",
            group_by(&o.ec, |e| e.disposal.clone(), |g| g.len())
                .into_iter()
                .map(|(k, n)| row(vec![k.into(), n.into()]))
                .collect(),
            false,
        ),
        (
            "SELECT attended, count(*) FROM op_appointments WHERE first_attendance GROUP BY attended",
            group_by(
                &o.op.iter().filter(|p| p.first_attendance).cloned().collect::<Vec<_>>(),
                |p| p.attended.clone(),
                |g| g.len(),
            )
            .into_iter()
            .map(|(k, n)| row(vec![k.into(), n.into()]))
            .collect(),
            false,
        ),
        (
            "SELECT staff_group, sum(fte) FROM workforce_finance_monthly GROUP BY staff_group",
            group_by(&o.workforce, |w| w.staff_group.clone(), |g| fsum(g, |w| w.fte))
                .into_iter()
                .map(|(k, s)| row(vec![k.into(), s.into()]))
                .collect(),
            false,
        ),
        (
            "SELECT a.treatment_specialty, sum(r.unit_cost_gbp) FROM apc_episodes a JOIN ref_unit_costs r \
             ON a.treatment_specialty = r.treatment_specialty AND a.patient_class = r.patient_class GROUP BY 1",
            group_by(
                &o.apc,
                |a| a.treatment_specialty.clone(),
                |g| {
                    fsum(g, |a| {
                        o.unit_costs[&(a.treatment_specialty.clone(), a.patient_class.clone())]
                    })
                },
            )
            .into_iter()
            .map(|(k, s)| row(vec![k.into(), s.into()]))
            .collect(),
            false,
        ),
        (
            "SELECT * FROM ref_unit_costs WHERE treatment_specialty = '110'",
            ["1", "2", "3"]
                .iter()
                .map(|c| {
                    row(vec![
                        "110".into(),
                        (*c).into(),
                        o.unit_costs[&("110".to_string(), c.to_string())].into(),
                    ])
                })
                .collect(),
            false,
        ),
        (
            "SELECT date_trunc('month', admission_date) AS m, count(*) FROM apc_episodes GROUP BY 1 ORDER BY 1 LIMIT 3",
            by_month
                .iter()
                .take(3)
                .map(|(k, n)| row(vec![k.as_str().into(), (*n).into()]))
                .collect(),
            true,
        ),
        (
            "SELECT primary_diagnosis, count(*) FROM apc_episodes GROUP BY 1 HAVING count(*) > 100",
            diagnosis_over_100,
            false,
        ),
        (
            "SELECT count(*) FILTER (WHERE sex = 'F'), count(*) FILTER (WHERE sex = 'M') FROM apc_episodes",
            vec![row(vec![
                count_where(&|a| a.sex == "F").into(),
                count_where(&|a| a.sex == "M").into(),
            ])],
            false,
        ),
        (
            "SELECT CASE WHEN los_days > 7 THEN 'long' ELSE 'short' END AS stay, count(*) FROM apc_episodes GROUP BY 1",
            vec![
                row(vec!["long".into(), count_where(&|a| a.los_days > 7).into()]),
                row(vec!["short".into(), count_where(&|a| a.los_days <= 7).into()]),
            ],
            false,
        ),
        (
            "SELECT count(DISTINCT s.pid) FROM (SELECT person_id AS pid FROM apc_episodes WHERE sex = 'F') s",
            vec![row(vec![o
                .apc
                .iter()
                .filter(|a| a.sex == "F")
                .map(|a| a.person_id.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                .into()])],
            false,
        ),
        (
            "SELECT sex, count(*) FROM apc_episodes WHERE los_days > 180 AND los_days <= 0 GROUP BY sex",
            vec![],
            false,
        ),
        (
            "SELECT corr(los_days, los_days * 2) FROM apc_episodes",
            vec![row(vec![correlation(
                &los,
                &los.iter().map(|v| v * 2.0).collect::<Vec<_>>(),
            )
            .into()])],
            false,
        ),
        ("SELECT 1 + 1 AS two", vec![row(vec![2i64.into()])], false),
        (
            "SELECT 'apc' AS t, count(*) FROM apc_episodes UNION ALL SELECT 'ec', count(*) FROM ec_attendances",
            vec![
                row(vec!["apc".into(), o.apc.len().into()]),
                row(vec!["ec".into(), o.ec.len().into()]),
            ],
            false,
        ),
    ]
}

const ROWS: &str = "refused: the query returns individual rows of apc_episodes; a trust node answers only aggregate queries (e.g. SELECT age_band, count(*), avg(…) FROM apc_episodes GROUP BY age_band)";
const LIMIT: &str = "refused: LIMIT over individual rows of apc_episodes is not allowed (it selects particular records); apply LIMIT to aggregated groups";
const COMPARED: &str = "refused: column person_id is an identifier and cannot be compared with a value";
const SUBQUERY: &str = "refused: sub-queries inside expressions (IN (SELECT …), EXISTS, scalar sub-queries) are not allowed; use a JOIN or a derived table";

/// Refused or invalid queries: (sql, gRPC code, exact message).
fn refused() -> Vec<(&'static str, Code, String)> {
    let deny = |sql: &'static str, msg: &str| (sql, Code::PermissionDenied, msg.to_string());
    vec![
        deny("SELECT * FROM apc_episodes", ROWS),
        deny("SELECT los_days FROM apc_episodes", ROWS),
        deny("SELECT person_id, count(*) FROM apc_episodes GROUP BY person_id", "refused: column person_id is an identifier and cannot appear in GROUP BY"),
        deny("SELECT count(*) FROM apc_episodes WHERE person_id = '0123456789abcdef'", COMPARED),
        deny("SELECT count(*) FROM apc_episodes WHERE person_id IN ('a', 'b')", COMPARED),
        deny("SELECT count(*) FROM apc_episodes WHERE person_id LIKE 'ab%'", COMPARED),
        deny("SELECT count(*) FROM apc_episodes WHERE person_id BETWEEN 'a' AND 'b'", COMPARED),
        deny("SELECT sum(CASE WHEN person_id = 'x' THEN cost_gbp END) FROM apc_episodes", COMPARED),
        deny("SELECT count(*) FILTER (WHERE person_id = 'x') FROM apc_episodes", COMPARED),
        deny("SELECT count(*) FROM apc_episodes a JOIN ec_attendances e ON a.person_id = e.disposal", COMPARED),
        deny(
            "SELECT count(*) FROM apc_episodes WHERE substr(person_id, 1, 2) = 'ab'",
            "refused: column person_id is an identifier and cannot be used in an expression",
        ),
        deny(
            "SELECT sex, count(*), rank() OVER (ORDER BY count(*)) FROM apc_episodes GROUP BY sex",
            "refused: window functions are not allowed: they compute a value for every row",
        ),
        deny("SELECT avg(los_days) FROM (SELECT los_days FROM apc_episodes ORDER BY cost_gbp DESC LIMIT 1) t", LIMIT),
        deny("SELECT los_days FROM apc_episodes LIMIT 5", LIMIT),
        deny("SELECT * FROM (SELECT person_id, cost_gbp FROM apc_episodes) s", ROWS),
        deny("SELECT count(*) FROM apc_episodes UNION ALL SELECT los_days FROM apc_episodes", ROWS),
        deny("SELECT count(*) FROM apc_episodes WHERE person_id IN (SELECT person_id FROM ec_attendances)", SUBQUERY),
        deny("SELECT count(*) FROM apc_episodes WHERE los_days > (SELECT avg(los_days) FROM apc_episodes)", SUBQUERY),
        deny(
            "SELECT count(*) FROM ec_attendances e JOIN apc_episodes a ON e.person_id = a.person_id \
             WHERE e.disposal = 'admitted' AND a.admission_method = '21' AND CAST(e.arrival_time AS DATE) = a.admission_date",
            "refused: ec_attendances and apc_episodes cannot be joined record by record: each record would meet every \
             record of the same person in the other table, and be counted as many times. Aggregate each table (e.g. in \
             CTEs grouped by provider_code and month) and join the aggregates",
        ),
        deny(
            "SELECT min(los_days), max(los_days) FROM apc_episodes",
            "refused: min() over records of people is one person's value; count(*) by bands (e.g. GROUP BY CASE WHEN \
             los_days <= 7 THEN … END) shows the spread instead",
        ),
        deny(
            "SELECT admission_date, count(*) FROM apc_episodes GROUP BY admission_date",
            "refused: GROUP BY apc_episodes.admission_date: admission_date can be shown or selected by month or coarser \
             only: group by date_trunc('month', admission_date) or extract(year FROM …), and compare it with the first \
             day of a month (>=, <) or its last day (<=, >). Group keys come from public domains: provider_code, \
             admission_method, patient_class, treatment_specialty, primary_diagnosis, primary_procedure, sex, age_band, \
             imd_decile; date_trunc('month', admission_date), date_trunc('month', discharge_date); bands of los_days \
             (CASE WHEN … at its edges), bands of cost_gbp (CASE WHEN … at its edges)",
        ),
        deny(
            "SELECT primary_diagnosis, treatment_specialty, age_band, count(*) FROM apc_episodes GROUP BY 1, 2, 3",
            &format!("refused: the answer has too many groups for this trust (max_groups, up to {MAX_GROUPS}); group by fewer or coarser dimensions"),
        ),
        deny(
            "SELECT max(cost_gbp) FROM apc_episodes",
            "refused: max() of cost_gbp would reveal one record's value (cost_gbp is a sensitive measure)",
        ),
        deny(
            "SELECT treatment_specialty, min(cost_gbp * 1.2) FROM apc_episodes GROUP BY 1",
            "refused: min() of cost_gbp would reveal one record's value (cost_gbp is a sensitive measure)",
        ),
        deny(
            "SELECT min(person_id) FROM apc_episodes",
            "refused: column person_id is an identifier and can only be counted (count(…) or count(DISTINCT …)), not passed to min()",
        ),
        deny(
            "SELECT cost_gbp, count(*) FROM apc_episodes GROUP BY cost_gbp",
            "refused: column cost_gbp is a sensitive measure and cannot appear in GROUP BY; aggregate it, or group by a banded expression such as floor(cost_gbp / 1000)",
        ),
        deny("SELECT DISTINCT person_id FROM apc_episodes", "refused: column person_id is an identifier and cannot appear in SELECT DISTINCT"),
        deny(
            "SELECT sex, count(*) FROM apc_episodes GROUP BY ROLLUP(sex)",
            "refused: GROUPING SETS, ROLLUP and CUBE are not allowed at a node; the coordinator computes totals from plain GROUP BY answers",
        ),
        deny(
            "SELECT array_agg(primary_diagnosis) FROM apc_episodes",
            &format!("refused: aggregate function array_agg is not allowed by this trust's policy (allowed: {})", tessera_policy::DEFAULT_AGGREGATES.iter().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")),
        ),
        deny("SELECT count(*) FROM generate_series(1, 10)", "refused: table function generate_series is not allowed at a node"),
        deny("EXPLAIN SELECT count(*) FROM apc_episodes", "refused: only SELECT queries are allowed, not EXPLAIN"),
        deny("CREATE TABLE copy AS SELECT * FROM apc_episodes", "refused: only SELECT queries are allowed, not DDL"),
        (
            "SELECT count(*) FROM patients",
            Code::InvalidArgument,
            "unknown table patients: this node serves apc_episodes, ec_attendances, op_appointments, ref_unit_costs, workforce_finance_monthly".into(),
        ),
        (
            "SELEC count(*) FROM apc_episodes",
            Code::InvalidArgument,
            "syntax error: sql parser error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1".into(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_answers_aggregates_exactly_and_refuses_row_level_queries_with_reasons() {
    let data = TestData::generate(&["RRK"], 6_000, 21);
    let oracle = Oracle::load(&[data.trust_dir("RRK")]);
    let config = data.node_config("RRK", |c| {
        c.policy.max_groups = MAX_GROUPS;
    });
    let node = TestNode::start(&config).await;

    let allowed = allowed(&oracle);
    let refused = refused();
    assert!(allowed.len() + refused.len() >= 30);
    let mut failures = Vec::new();
    for (sql, expected, ordered) in &allowed {
        match node.ask(sql).await {
            Ok(answer) => {
                if let Err(diff) = compare(&rows_of(&answer.batches), expected, *ordered) {
                    failures.push(format!("{sql}\n  {diff}"));
                }
            }
            Err(e) => failures.push(format!("{sql}\n  unexpected error: {e}")),
        }
    }
    for (sql, code, message) in &refused {
        match node.ask(sql).await {
            Ok(answer) => failures.push(format!("{sql}\n  was answered with {} rows", answer.num_rows())),
            Err(e) if e.code() == Some(*code) && e.to_string() == *message => {}
            Err(e) => failures.push(format!("{sql}\n  got {:?}: {e}\n  want {code:?}: {message}", e.code())),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} queries misbehaved:\n{}",
        failures.len(),
        allowed.len() + refused.len(),
        failures.join("\n")
    );

    // Every request is in the audit log, in order, with its decision; the chain is intact.
    let verified = verify(&node.audit_log).expect("audit log intact");
    assert_eq!(verified.lines as usize, allowed.len() + refused.len());
    let entries = std::fs::read_to_string(&node.audit_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<AuditEntry>(l).unwrap())
        .collect::<Vec<_>>();
    for (entry, (sql, expected, _)) in entries.iter().zip(&allowed) {
        assert_eq!(
            (entry.sql.as_str(), entry.decision, entry.rows as usize),
            (*sql, Decision::Allowed, expected.len())
        );
        assert_eq!(
            (entry.requester.as_str(), entry.project.as_str(), entry.call.as_str()),
            ("tester", "battery", "DoGet")
        );
    }
    for (entry, (sql, code, message)) in entries[allowed.len()..].iter().zip(&refused) {
        let decision = if *code == Code::PermissionDenied {
            Decision::Refused
        } else {
            Decision::Error
        };
        assert_eq!(
            (entry.sql.as_str(), entry.decision, entry.reason.as_deref(), entry.rows),
            (*sql, decision, Some(message.as_str()), 0)
        );
    }
    node.running.stop().await;
}
