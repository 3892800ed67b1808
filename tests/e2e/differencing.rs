//! Differencing and trackers across queries of one project, on the small fixture of
//! `disclosure.rs`: age band 18-29 holds 3 episodes, 30-44 holds 12, 45-59 holds 23 (38 in all).
//!
//! Each attack asks two or more queries of one coordinator (one project, one release log) and
//! checks, with numbers written here, that the 3 cannot be recovered from everything released.

use tessera_engine::coordinator::Coordinator;
use tessera_engine::disclosure::DisclosureConfig;
use tessera_support::{compare, rows_of, Cell};

use crate::disclosure::{coordinator, small_federation, Small};

async fn ask(c: &Coordinator, sql: &str) -> (Vec<Vec<Cell>>, String) {
    let result = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    (rows_of(&result.batches), result.disclosure)
}

fn unrounded() -> DisclosureConfig {
    // Without rounding the subtraction would be exact, so only suppression can protect the 3.
    DisclosureConfig {
        round_to: 1,
        ..DisclosureConfig::default()
    }
}

const BY_AGE: &str = "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band ORDER BY age_band";
const TOTAL: &str = "SELECT count(*) AS n FROM apc_episodes";
const WITHOUT_SMALL: &str = "SELECT count(*) AS n FROM apc_episodes WHERE age_band <> '18-29'";

fn by_age(n30: Option<i64>, n45: Option<i64>) -> Vec<Vec<Cell>> {
    let n = |v: Option<i64>| v.map_or(Cell::Null, Cell::Int);
    // The 18-29 row (3 records) is never released, labels included.
    vec![vec![Cell::from("30-44"), n(n30)], vec![Cell::from("45-59"), n(n45)]]
}

fn one(n: Option<i64>) -> Vec<Vec<Cell>> {
    vec![vec![n.map_or(Cell::Null, Cell::Int)]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differencing_with_a_total_after_a_table() {
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(&c, BY_AGE).await;
    compare(&rows, &by_age(Some(12), Some(23)), true).unwrap();
    // 38 - 12 - 23 = 3: the total would give the suppressed cell away.
    let (rows, _) = ask(&c, TOTAL).await;
    compare(&rows, &one(None), true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differencing_with_a_table_after_its_total() {
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(&c, TOTAL).await;
    compare(&rows, &one(Some(38)), true).unwrap();
    // 38 - 12 - 23 = 3 again: the smallest released cell (30-44, 12) is suppressed too, so the
    // total less what is released is 15.
    let (rows, _) = ask(&c, BY_AGE).await;
    compare(&rows, &by_age(None, Some(23)), true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differencing_with_two_filters_either_way_round() {
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(&c, TOTAL).await;
    compare(&rows, &one(Some(38)), true).unwrap();
    let (rows, _) = ask(&c, WITHOUT_SMALL).await;
    compare(&rows, &one(None), true).unwrap();

    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(&c, WITHOUT_SMALL).await;
    compare(&rows, &one(Some(35)), true).unwrap();
    let (rows, _) = ask(&c, TOTAL).await;
    compare(&rows, &one(None), true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_a_query_and_its_complement() {
    // The tracker: a condition C that is not small (stays of 3 days or more), asked as C and as
    // NOT C OR the target; (C OR target) - C is the target.
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(&c, "SELECT count(*) AS n FROM apc_episodes WHERE los_days >= 3").await;
    compare(&rows, &one(Some(35)), true).unwrap();
    // The tracker itself is refused by construction: a condition is about one column.
    let refused = c
        .query("SELECT count(*) AS n FROM apc_episodes WHERE los_days >= 3 OR age_band = '18-29'")
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("each must be about one column"),
        "{}",
        refused.message
    );
    // The complement of the tracker against the total.
    let (rows, _) = ask(&c, "SELECT count(*) AS n FROM apc_episodes WHERE los_days < 3").await;
    assert!(rows.is_empty(), "3 records: no row at all, {rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differencing_inside_one_query_and_through_sums() {
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    // Two aggregates of one query: the total and the total without the small group.
    let (rows, _) = ask(
        &c,
        "SELECT count(*) AS n, count(*) FILTER (WHERE age_band <> '18-29') AS rest FROM apc_episodes",
    )
    .await;
    compare(&rows, &[vec![Cell::Int(38), Cell::Null]], true).unwrap();
    // The same, with the small group's records turned into NULLs that count(x) skips.
    let (rows, _) = ask(
        &c,
        "SELECT count(*) AS n, count(CASE WHEN age_band <> '18-29' THEN 1 END) AS rest FROM apc_episodes",
    )
    .await;
    compare(&rows, &[vec![Cell::Int(38), Cell::Null]], true).unwrap();
    // Bed days by age after the table: the 18-29 stays (3 days) would be the difference.
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    ask(
        &c,
        "SELECT age_band, sum(los_days) AS bed_days FROM apc_episodes GROUP BY age_band",
    )
    .await;
    let (rows, _) = ask(&c, "SELECT sum(los_days) AS bed_days FROM apc_episodes").await;
    compare(&rows, &one(None), true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_and_repeated_questions_are_not_suppressed() {
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    // The same table again, one large cell alone, and a union of released cells.
    for _ in 0..2 {
        let (rows, _) = ask(&c, BY_AGE).await;
        compare(&rows, &by_age(Some(12), Some(23)), true).unwrap();
    }
    let (rows, _) = ask(&c, "SELECT count(*) AS n FROM apc_episodes WHERE age_band = '45-59'").await;
    compare(&rows, &one(Some(23)), true).unwrap();
    let (rows, _) = ask(
        &c,
        "SELECT count(*) AS n FROM apc_episodes WHERE age_band IN ('30-44', '45-59')",
    )
    .await;
    compare(&rows, &one(Some(35)), true).unwrap();
    // But everyone except 45-59 (15) less the released 30-44 (12) is the hidden 3.
    let (rows, _) = ask(&c, "SELECT count(*) AS n FROM apc_episodes WHERE age_band <> '45-59'").await;
    compare(&rows, &one(None), true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_log_outlives_the_coordinator_and_a_damaged_log_releases_nothing() {
    let small: Small = small_federation().await;
    let log = tempfile::tempdir().unwrap();
    let config = DisclosureConfig {
        release_log: Some(log.path().join("project.jsonl")),
        ..unrounded()
    };
    ask(&coordinator(&small, config.clone()), BY_AGE).await;
    // A new coordinator process for the same project reads the same log.
    let (rows, _) = ask(&coordinator(&small, config.clone()), TOTAL).await;
    compare(&rows, &one(None), true).unwrap();
    let text = std::fs::read_to_string(log.path().join("project.jsonl")).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        r#"{"table":"apc_episodes","predicate":null,"groups":["age_band"],"variants":[{"condition":null,"measure":"records","released":[["30-44"],["45-59"]]}]}"#
    );
    std::fs::write(log.path().join("project.jsonl"), "{not json\n").unwrap();
    let error = coordinator(&small, config).query(TOTAL).await.unwrap_err();
    assert!(
        error.message.starts_with(&format!(
            "release log {}: line 1: ",
            log.path().join("project.jsonl").display()
        )),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_total_in_the_same_result_through_union_all() {
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(
        &c,
        "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band \
         UNION ALL SELECT 'all', count(*) FROM apc_episodes ORDER BY 1",
    )
    .await;
    // 38 - 12 - 23 = 3: the total is hidden with the small cell.
    let mut expected = by_age(Some(12), Some(23));
    expected.push(vec![Cell::from("all"), Cell::Null]);
    compare(&rows, &expected, true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_overlapping_queries_that_defeat_rounding() {
    // With rounding to 5, 12 shows as 10 and 15 as 15: asking a group and the group plus the
    // target, again and again with different neighbours, narrows the target down. Each query
    // whose difference from an earlier one is small is hidden instead.
    let small = small_federation().await;
    let c = coordinator(&small, DisclosureConfig::default());
    let (rows, _) = ask(&c, "SELECT count(*) AS n FROM apc_episodes WHERE age_band = '30-44'").await;
    compare(&rows, &one(Some(10)), true).unwrap();
    for widened in [
        "SELECT count(*) AS n FROM apc_episodes WHERE age_band IN ('30-44', '18-29')",
        "SELECT count(*) AS n FROM apc_episodes WHERE age_band <> '45-59'",
    ] {
        let (rows, _) = ask(&c, widened).await;
        compare(&rows, &one(None), true).unwrap_or_else(|e| panic!("{widened}: {e}"));
    }
    // A neighbour that is not small is fine: 30-44 and 45-59 together (35).
    let (rows, _) = ask(
        &c,
        "SELECT count(*) AS n FROM apc_episodes WHERE age_band IN ('30-44', '45-59')",
    )
    .await;
    compare(&rows, &one(Some(35)), true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sum_is_differenced_by_its_contributing_records_not_its_rows() {
    // Bed days of 18-29 and 45-59 only, by "not 45-59": the first cell has 15 episodes but only
    // the 3 of 18-29 contribute (3 bed days), so it is hidden; 45-59 shows 115. The total (118)
    // has 38 rows, but only 26 contribute: 26 - 23 = 3 records would be exposed.
    let sum = "sum(CASE WHEN age_band IN ('18-29', '45-59') THEN los_days ELSE 0 END)";
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(
        &c,
        &format!("SELECT age_band <> '45-59' AS other, {sum} AS bed_days FROM apc_episodes GROUP BY 1 ORDER BY 1"),
    )
    .await;
    compare(
        &rows,
        &[
            vec![Cell::from("false"), Cell::Int(115)],
            vec![Cell::from("true"), Cell::Null],
        ],
        true,
    )
    .unwrap();
    let (rows, _) = ask(&c, &format!("SELECT {sum} AS bed_days FROM apc_episodes")).await;
    compare(&rows, &one(None), true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shapes_that_would_dodge_the_check_are_refused_and_partial_answers_withheld() {
    let small = small_federation().await;
    let c = coordinator(&small, DisclosureConfig::default());
    for (sql, message) in [
        (
            "SELECT count(*) FROM (SELECT age_band FROM apc_episodes WHERE age_band <> '18-29' \
             UNION ALL SELECT age_band FROM apc_episodes WHERE los_days > 90) s",
            "an aggregate over a UNION of rows is not allowed under disclosure control: aggregate each table and \
             combine the aggregates (UNION ALL of aggregate queries)",
        ),
        (
            "SELECT count(*) FROM apc_episodes WHERE random() < 2.0",
            "`random() < Float64(2)` uses a volatile function (random(), now() …): a condition or group must select \
             the same records every time",
        ),
    ] {
        let error = c.query(sql).await.unwrap_err();
        assert_eq!(error.message, message, "{sql}");
    }

    // Partial answers: RTH's share of a total would be the difference from a complete total.
    let mut entries = small.entries.clone();
    entries.push(tessera_engine::coordinator::config::NodeEntry {
        name: "RX1".into(),
        url: "http://127.0.0.1:9".into(),
    });
    let config = tessera_engine::coordinator::FederationConfig {
        federation: tessera_engine::coordinator::config::FederationSection {
            on_node_failure: tessera_engine::coordinator::OnNodeFailure::Partial,
            coordinator_token: Some(tessera_support::COORDINATOR_TOKEN.into()),
            ..Default::default()
        },
        nodes: entries,
        disclosure: DisclosureConfig {
            release_log: Some(small.dir().join("partial.jsonl")),
            ..DisclosureConfig::default()
        },
    };
    let partial = Coordinator::new(config, &tessera_schemas::Catalog::builtin()).unwrap();
    let error = partial.query(TOTAL).await.unwrap_err();
    assert!(
        error
            .message
            .contains("with disclosure control on, a partial answer about people is not released"),
        "{}",
        error.message
    );
    // And nothing was logged as released.
    assert!(!small.dir().join("partial.jsonl").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_and_a_mean_are_not_differenced_against_each_other() {
    // 18-29 and 30-44: 15 episodes, of which the 12 of 30-44 contribute to the picked stays. The
    // count (15) and the mean over all 15 (36 / 15 = 2.4) reveal nothing about the 3 zeros' number
    // beyond what the count says, so the mean is not hidden for being built from 12 records.
    let picked = "CASE WHEN age_band = '30-44' THEN los_days ELSE 0 END";
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(
        &c,
        &format!("SELECT count(*) AS n, avg({picked}) AS days FROM apc_episodes WHERE age_band IN ('18-29', '30-44')"),
    )
    .await;
    compare(&rows, &[vec![Cell::Int(15), Cell::Float(2.4)]], true).unwrap();
    // A sum of the same quantity over a subset with the same contributing records adds nothing:
    // 30-44 alone has the same 12 contributing records and the same 36 days.
    let (rows, _) = ask(
        &c,
        &format!("SELECT sum({picked}) AS days FROM apc_episodes WHERE age_band = '30-44'"),
    )
    .await;
    compare(&rows, &one(Some(36)), true).unwrap();
}
