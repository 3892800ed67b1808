//! The cell model (issue: disclosure control that holds by construction): the attack classes an
//! adversarial review used to recover records, costs and small counts, each as a test that
//! recovers nothing — at the coordinator and, straight from a node, at the trust.
//!
//! Fixture (see `disclosure.rs`): age band 18-29 holds 3 episodes (costs 900, 901 at RRK and
//! 950 at RTH), 30-44 holds 12 (8 + 4), 45-59 holds 23 (20 + 3); everyone is F, diagnosis R69.

use tessera_coordinator::{Coordinator, ErrorKind};
use tessera_support::{rows_of, Cell};

use crate::disclosure::{coordinator, exact_rules, small_federation};

async fn rows(c: &Coordinator, sql: &str) -> Vec<Vec<Cell>> {
    let result = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows_of(&result.batches)
}

/// Whether the result is one row of one value matching `expected`.
fn only(rows: &[Vec<Cell>], expected: &Cell) -> bool {
    matches!(rows, [row] if row.len() == 1 && row[0].matches(expected))
}

async fn refusal(c: &Coordinator, sql: &str) -> String {
    match c.query(sql).await {
        Ok(r) => panic!("{sql} was answered: {:?}", rows_of(&r.batches)),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Query, "{sql}: {}", e.message);
            e.message
        }
    }
}

/// Classes 1 and 3: a row of fewer than 10 records is never released, labels included, whether
/// it comes from a GROUP BY with or without statistics, SELECT DISTINCT or a filter that isolates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_of_small_groups_are_not_released_at_all() {
    let small = small_federation().await;
    let c = coordinator(&small, exact_rules());
    for (attack, sql, released) in [
        (
            "GROUP BY without aggregates",
            "SELECT age_band FROM apc_episodes GROUP BY ALL ORDER BY 1",
            vec!["30-44", "45-59"],
        ),
        (
            "SELECT DISTINCT",
            "SELECT DISTINCT age_band FROM apc_episodes ORDER BY 1",
            vec!["30-44", "45-59"],
        ),
        (
            "a suppressed cell's labels",
            "SELECT age_band, count(*) FROM apc_episodes GROUP BY 1 ORDER BY 1",
            vec!["30-44", "45-59"],
        ),
        (
            "a filter that isolates the small group",
            "SELECT age_band, avg(los_days) FROM apc_episodes WHERE age_band = '18-29' GROUP BY 1",
            vec![],
        ),
        (
            "the labels of a group by several dimensions",
            "SELECT age_band, sex, primary_diagnosis, count(*) FROM apc_episodes GROUP BY 1, 2, 3 ORDER BY 1",
            vec!["30-44", "45-59"],
        ),
    ] {
        let labels = rows(&c, sql)
            .await
            .into_iter()
            .map(|row| match &row[0] {
                Cell::Str(s) => s.clone(),
                other => panic!("{attack}: label {other:?}"),
            })
            .collect::<Vec<_>>();
        assert_eq!(labels, released, "{attack}: {sql}");
    }
    // A global aggregate over too few records is no row at all, like an empty one.
    assert!(rows(
        &c,
        "SELECT count(*), sum(cost_gbp) FROM apc_episodes WHERE age_band = '18-29'"
    )
    .await
    .is_empty());
}

/// Class 4: central SQL over federated groups sees released cells only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_aggregates_see_released_groups_only() {
    let small = small_federation().await;
    let c = coordinator(&small, exact_rules());
    for sql in [
        "SELECT count(*) FROM (SELECT age_band FROM apc_episodes GROUP BY ALL) t",
        "SELECT count(*) FROM (SELECT DISTINCT age_band FROM apc_episodes) t",
        "WITH g AS (SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY 1) SELECT count(*) FROM g",
    ] {
        // Three groups exist; one has 3 records.
        let got = rows(&c, sql).await;
        assert!(only(&got, &Cell::Int(2)), "{sql}: {got:?}");
    }
}

/// Class 2: group keys and conditions come from public domains only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_conditions_outside_public_domains_are_refused() {
    let small = small_federation().await;
    let c = coordinator(&small, exact_rules());
    for (attack, sql, says) in [
        ("a measure as a key", "SELECT cost_gbp * 1 AS c, count(*) FROM apc_episodes GROUP BY 1", "cost_gbp is a measure"),
        ("a cast measure as a key", "SELECT CAST(cost_gbp AS VARCHAR) AS c, count(*) FROM apc_episodes GROUP BY 1", "cost_gbp is a measure"),
        ("a raw record through GROUP BY ALL", "SELECT age_band, cost_gbp * 1 AS c FROM apc_episodes GROUP BY ALL", "cost_gbp is a measure"),
        ("a measure through a sub-query", "SELECT x, count(*) FROM (SELECT los_days AS x FROM apc_episodes) s GROUP BY x", "los_days is a measure"),
        ("a day-level date", "SELECT admission_date, count(*) FROM apc_episodes GROUP BY 1", "by month or coarser"),
        ("a week", "SELECT date_trunc('week', admission_date), count(*) FROM apc_episodes GROUP BY 1", "by month or coarser"),
        ("an identifier", "SELECT person_id, count(*) FROM apc_episodes GROUP BY 1", "identifier"),
        ("a band at an undeclared edge", "SELECT CASE WHEN cost_gbp < 949.5 THEN 'a' ELSE 'b' END, count(*) FROM apc_episodes GROUP BY 1", "public bands"),
        ("a key across two columns", "SELECT CASE WHEN age_band = '18-29' AND sex = 'F' THEN 'a' ELSE 'b' END, count(*) FROM apc_episodes GROUP BY 1", "each must be about one column"),
        ("NOT of a cross-column box", "SELECT count(*) FROM apc_episodes WHERE NOT (age_band = '18-29' AND sex = 'F')", "each must be about one column"),
        ("OR across columns", "SELECT count(*) FROM apc_episodes WHERE age_band = '18-29' OR sex = 'M'", "each must be about one column"),
        ("a FILTER carving records out", "SELECT count(*) FILTER (WHERE NOT (age_band = '18-29' AND primary_diagnosis = 'R69')) FROM apc_episodes", "each must be about one column"),
        ("a measure compared with a value", "SELECT count(*) FROM apc_episodes WHERE cost_gbp >= 949.5", "public bands"),
        ("a day in a filter", "SELECT count(*) FROM apc_episodes WHERE admission_date = DATE '2024-05-01'", "by month or coarser"),
        ("columns compared with each other", "SELECT count(*) FROM apc_episodes WHERE discharge_date = admission_date", "each must be about one column"),
        ("a volatile function", "SELECT count(*) FROM apc_episodes WHERE random() < 0.5", "volatile"),
        ("a cross join with a public table", "SELECT count(*) FROM apc_episodes, ref_unit_costs", "whole key"),
        ("a cast that fails on one record's cost", "SELECT sum(CAST(cost_gbp AS DECIMAL(3,2))) FROM apc_episodes WHERE age_band = '18-29'", "could fail on a record"),
        ("a cast that fails on an identifier", "SELECT count(CAST(person_id AS INT)) FROM apc_episodes WHERE age_band = '18-29'", "could fail on a record"),
        ("a key that fails only if a diagnosis is present", "SELECT CAST(CASE WHEN primary_diagnosis = 'R69' THEN primary_diagnosis ELSE '0' END AS INT), count(*) FROM apc_episodes GROUP BY 1", "could fail on a record"),
        ("text compared with a number", "SELECT count(*) FROM apc_episodes WHERE primary_diagnosis = 5", "different kinds"),
        ("a rounding cast drawing a new band edge", "SELECT count(*) FROM apc_episodes WHERE CAST(cost_gbp AS DECIMAL(10,0)) < 1000", "could fail on a record"),
        ("a measure compared as text", "SELECT count(*) FROM apc_episodes WHERE CAST(los_days AS VARCHAR) < '2'", "public bands"),
        ("a narrowing TRY_CAST drawing a new edge", "SELECT count(*) FROM apc_episodes WHERE TRY_CAST(cost_gbp AS SMALLINT) IS NULL", "public bands"),
        ("a chain of same-person joins copying one record many times", "SELECT count(*), avg(a.cost_gbp) FROM apc_episodes a JOIN op_appointments b ON a.person_id = b.person_id AND a.provider_code = b.provider_code JOIN op_appointments c ON a.person_id = c.person_id AND a.provider_code = c.provider_code WHERE a.age_band = '18-29'", "cannot be joined record by record"),
        ("a same-person join of two tables", "SELECT count(*) FROM apc_episodes a JOIN apc_episodes b ON a.person_id = b.person_id AND a.provider_code = b.provider_code", "cannot be joined record by record"),
        ("a clock shifted by a time zone", "SELECT date_trunc('month', arrival_time AT TIME ZONE '-01:00'), count(*) FROM ec_attendances GROUP BY 1", "cannot be used in a group key"),
        ("one day of a timestamp after the last day of a month", "SELECT count(*) FROM ec_attendances WHERE arrival_time > DATE '2024-01-31'", "by month or coarser"),
        ("a join on part of a public key", "SELECT count(*) FROM apc_episodes a JOIN ref_unit_costs r ON a.treatment_specialty = r.treatment_specialty", "whole key"),
        ("a join with organisational rows", "SELECT count(*) FROM apc_episodes a JOIN workforce_finance_monthly w ON a.provider_code = w.provider_code", "row by row"),
    ] {
        let message = refusal(&c, sql).await;
        assert!(message.contains(says), "{attack}: {sql}\n  said: {message}");
    }
}

/// Classes 5, 6 and 8: statistics are classified by the records they are built from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_outside_the_whitelist_are_refused() {
    let small = small_federation().await;
    let c = coordinator(&small, exact_rules());
    let one = "CASE WHEN age_band = '18-29' AND los_days <= 1 THEN 0 ELSE 1 END";
    for (attack, sql, says) in [
        (
            "a regression on an indicator",
            format!("SELECT regr_intercept(cost_gbp, {one}) FROM apc_episodes"),
            "two measures",
        ),
        (
            "regr_avgy of an indicator",
            format!("SELECT regr_avgy({one}, los_days) FROM apc_episodes"),
            "two measures",
        ),
        (
            "regr_syy of an indicator",
            format!("SELECT regr_syy({one}, los_days) FROM apc_episodes"),
            "two measures",
        ),
        (
            "a variance of an indicator",
            format!("SELECT var_pop({one}) FROM apc_episodes"),
            "measures only",
        ),
        (
            "a standard deviation of an indicator",
            format!("SELECT stddev({one}) FROM apc_episodes"),
            "measures only",
        ),
        (
            "a model of a sensitive measure",
            "SELECT regr_slope(cost_gbp, los_days) FROM apc_episodes".into(),
            "sensitive measure",
        ),
        (
            "bool_or searching a maximum",
            "SELECT bool_or(cost_gbp > 949) FROM apc_episodes".into(),
            "bool_or",
        ),
        (
            "bool_and revealing zeros",
            "SELECT bool_and(los_days >= 1) FROM apc_episodes".into(),
            "bool_and",
        ),
        (
            "min of a measure",
            "SELECT min(los_days) FROM apc_episodes".into(),
            "one person's value",
        ),
        (
            "max of a date",
            "SELECT max(admission_date) FROM apc_episodes".into(),
            "one person's value",
        ),
        (
            "a sum of a dimension",
            "SELECT sum(imd_decile) FROM apc_episodes".into(),
            "adds up codes",
        ),
        (
            "count(DISTINCT) of a dimension",
            "SELECT count(DISTINCT age_band) FROM apc_episodes".into(),
            "DISTINCT",
        ),
        (
            "a measure turned around",
            "SELECT sum(1000000 - cost_gbp) FROM apc_episodes".into(),
            "only scaling by a positive constant",
        ),
        (
            "a sum scaled past the largest number (infinite when the true sum passes a line)",
            "SELECT sum(cost_gbp / 0.000001 * 1000000) FROM apc_episodes".into(),
            "a factor from 1e-6 to 1e6",
        ),
        (
            "a divisor scaling a sum a trillionfold",
            "SELECT sum(cost_gbp / 1e-300) FROM apc_episodes".into(),
            "by a factor from 1e-6 to 1e6",
        ),
        (
            "a mean spelled as a regression part, with noise of its own",
            "SELECT regr_avgx(los_days, los_days) FROM apc_episodes".into(),
            "ask avg(…) for a mean",
        ),
        // A black-box attack recovered one patient's exact cost and stay: such a sum has the
        // same contributors (and so the same noise) as sum(x), and 2·sum(x) − it is the box's sum.
        (
            "a measure scaled differently inside and outside a box",
            "SELECT sum(cost_gbp), sum(CASE WHEN age_band = '18-29' THEN cost_gbp ELSE cost_gbp * 2 END) FROM apc_episodes"
                .into(),
            "one scale",
        ),
        (
            "a mean scaled differently inside and outside a box",
            "SELECT avg(CASE WHEN age_band = '18-29' THEN los_days ELSE los_days * 2 END) FROM apc_episodes".into(),
            "one scale",
        ),
        (
            "two boxes with two scales",
            "SELECT sum(CASE WHEN age_band = '18-29' THEN cost_gbp * 3 WHEN age_band = '30-44' THEN cost_gbp ELSE 0 END) \
             FROM apc_episodes"
                .into(),
            "one scale",
        ),
        // Black-box attacks: the spread of a measure with one box set to 0 has the plain spread's
        // records and noise, so the two gave one patient's exact stay; and a measure narrowed by
        // its own values to 0s and 1s has a spread that is a count of each.
        (
            "a spread with a box set to 0",
            "SELECT var(los_days), var(CASE WHEN age_band = '18-29' THEN 0 ELSE los_days END) FROM apc_episodes".into(),
            "picked by CASE",
        ),
        (
            "a spread of a measure narrowed by its own values",
            "SELECT count(*), var(los_days) FROM apc_episodes WHERE los_days <= 1".into(),
            "own values",
        ),
        (
            "a covariance with a box set to 0",
            "SELECT covar_samp(los_days, CASE WHEN age_band = '18-29' THEN 0 ELSE los_days END) FROM apc_episodes"
                .into(),
            "picked by CASE",
        ),
        (
            "a correlation over records narrowed by one of its measures",
            "SELECT corr(los_days, los_days * 2) FROM apc_episodes WHERE los_days <= 1".into(),
            "own values",
        ),
        (
            "a spread whose FILTER narrows the measure",
            "SELECT stddev(cost_gbp) FILTER (WHERE cost_gbp < 1000) FROM apc_episodes".into(),
            "own values",
        ),
        (
            "a CASE testing two columns in two WHENs",
            "SELECT sum(CASE WHEN age_band = '18-29' THEN 0 WHEN sex = 'F' THEN 1 ELSE 0 END) FROM apc_episodes".into(),
            "must test one column",
        ),
    ] {
        let message = refusal(&c, &sql).await;
        assert!(message.contains(says), "{attack}: {sql}\n  said: {message}");
    }
}

/// Class 6: counts in disguise are protected as the counts they are, class by class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_in_disguise_are_protected_as_counts() {
    let small = small_federation().await;
    // 30-44 holds 12 records: released as 10 (rounded to 5), however the count is spelled. Each
    // question in a fresh project, so that no earlier release is differenced against.
    for sql in [
        "SELECT count(*) FROM apc_episodes WHERE age_band = '30-44'",
        "SELECT sum(3) / 3 FROM apc_episodes WHERE age_band = '30-44'",
        "SELECT sum(CASE WHEN age_band = '30-44' THEN 7 ELSE 0 END) / 7 FROM apc_episodes WHERE age_band IN ('30-44', '45-59')",
        "SELECT sum(CAST(age_band = '30-44' AS INT)) FROM apc_episodes",
    ] {
        let c = coordinator(&small, exact_rules());
        let got = rows(&c, sql).await;
        assert!(only(&got, &Cell::Float(10.0)), "{sql}: {got:?}");
    }
    // A rate whose smaller class is the small group (3 of 38) is withheld, however it is written.
    for sql in [
        "SELECT avg(CAST(age_band <> '18-29' AS INT)) FROM apc_episodes",
        "SELECT avg(CASE WHEN age_band = '18-29' THEN 0.0 ELSE 1.0 END) FROM apc_episodes",
    ] {
        let c = coordinator(&small, exact_rules());
        let got = rows(&c, sql).await;
        assert!(only(&got, &Cell::Null), "{sql}: {got:?}");
    }
}

/// A trust's node enforces the same rules on whatever it is asked, whoever asks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_the_same_attacks_itself() {
    let small = small_federation().await;
    let node = &small.nodes[0];
    for (attack, sql, says) in [
        (
            "a measure as a key",
            "SELECT cost_gbp * 1 AS c, count(*) FROM apc_episodes GROUP BY 1",
            "cost_gbp is a measure",
        ),
        (
            "a record through GROUP BY ALL",
            "SELECT age_band, cost_gbp * 1 AS c FROM apc_episodes GROUP BY ALL",
            "cost_gbp is a measure",
        ),
        (
            "NOT of a cross-column box",
            "SELECT count(*) FROM apc_episodes WHERE NOT (age_band = '18-29' AND sex = 'F')",
            "each must be about one column",
        ),
        (
            "a regression on an indicator",
            "SELECT regr_intercept(cost_gbp, CASE WHEN age_band = '18-29' THEN 0 ELSE 1 END) FROM apc_episodes",
            "two measures",
        ),
        (
            "a variance of an indicator",
            "SELECT var_pop(CASE WHEN age_band = '18-29' THEN 1 ELSE 0 END) FROM apc_episodes",
            "measures only",
        ),
        ("bool_or", "SELECT bool_or(cost_gbp > 949) FROM apc_episodes", "bool_or"),
        (
            "a count of groups of groups",
            "SELECT count(*) FROM (SELECT age_band FROM apc_episodes GROUP BY 1) t",
            "another aggregate",
        ),
        (
            "a day-level date",
            "SELECT admission_date, count(*) FROM apc_episodes GROUP BY 1",
            "by month or coarser",
        ),
        (
            "one record's exact cost",
            "SELECT count(*) FROM apc_episodes WHERE cost_gbp = 900.0",
            "public bands",
        ),
        (
            "a same-person self-join copying records",
            "SELECT count(*), avg(a.cost_gbp) FROM apc_episodes a JOIN apc_episodes b ON a.person_id = b.person_id AND a.provider_code = b.provider_code",
            "cannot be joined record by record",
        ),
        (
            "a value that is no band edge",
            "SELECT count(*) FILTER (WHERE los_days = 5) FROM apc_episodes",
            "public bands",
        ),
        (
            "the variance of cost as a model",
            "SELECT covar_pop(cost_gbp, cost_gbp) FROM apc_episodes",
            "sensitive measure",
        ),
        (
            "a regression of cost",
            "SELECT regr_slope(cost_gbp, los_days) FROM apc_episodes",
            "sensitive measure",
        ),
        (
            "a cast that fails on one record",
            "SELECT sum(CAST(cost_gbp AS DECIMAL(3,2))) FROM apc_episodes",
            "could fail on a record",
        ),
    ] {
        let message = match node.ask(sql).await {
            Ok(_) => panic!("{attack}: the node answered {sql}"),
            Err(e) => e.to_string(),
        };
        assert!(message.contains(says), "{attack}: {sql}\n  said: {message}");
    }
    // A node under the default policy names no profile in its audit lines.
    let log = std::fs::read_to_string(&node.audit_log).unwrap();
    assert!(!log.contains("\"profile\""), "{log}");
}

/// What fails while a query runs at a node never reaches the caller: a conversion error would
/// quote the record's value. (A node in the exactness-test profile runs such a query.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_a_node_names_no_value() {
    let fed = tessera_support::Federation::start(&["RRK"], 500, 3).await;
    let error = fed.nodes[0]
        .ask("SELECT sum(CAST(cost_gbp AS DECIMAL(3,2))) FROM apc_episodes")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("the query failed at the node while it ran"), "{error}");
    assert!(!error.chars().any(|c| c.is_ascii_digit()), "{error}");
    // The trust's own audit log keeps the detail, and says the node runs the test profile.
    let log = std::fs::read_to_string(&fed.nodes[0].audit_log).unwrap();
    let last = log.lines().last().unwrap();
    assert!(
        last.contains("Decimal") && last.contains(r#""profile":"exactness-test""#),
        "{log}"
    );
}
