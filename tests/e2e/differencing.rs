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
    vec![
        vec![Cell::from("18-29"), Cell::Null],
        vec![Cell::from("30-44"), n(n30)],
        vec![Cell::from("45-59"), n(n45)],
    ]
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
    let (rows, footer) = ask(&c, TOTAL).await;
    compare(&rows, &one(None), true).unwrap();
    assert_eq!(
        footer,
        "1 cell suppressed: 1 (differencing with earlier results); checked against 1 earlier result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differencing_with_a_table_after_its_total() {
    let small = small_federation().await;
    let c = coordinator(&small, unrounded());
    let (rows, _) = ask(&c, TOTAL).await;
    compare(&rows, &one(Some(38)), true).unwrap();
    // 38 - 12 - 23 = 3 again: the smallest released cell (30-44, 12) is suppressed too, so the
    // total less what is released is 15.
    let (rows, footer) = ask(&c, BY_AGE).await;
    compare(&rows, &by_age(None, Some(23)), true).unwrap();
    assert_eq!(
        footer,
        "2 cells suppressed: 1 (threshold 10), 1 (differencing with earlier results); checked against 1 earlier result"
    );
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
    let (rows, _) = ask(
        &c,
        "SELECT count(*) AS n FROM apc_episodes WHERE los_days >= 3 OR age_band = '18-29'",
    )
    .await;
    compare(&rows, &one(None), true).unwrap();
    // The complement of the tracker against the total.
    let (rows, _) = ask(&c, "SELECT count(*) AS n FROM apc_episodes WHERE los_days < 3").await;
    compare(&rows, &one(None), true).unwrap();
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
    let (rows, footer) = ask(&c, "SELECT count(*) AS n FROM apc_episodes WHERE age_band = '45-59'").await;
    compare(&rows, &one(Some(23)), true).unwrap();
    assert_eq!(footer, "no cells suppressed; checked against 1 earlier result");
    let (rows, footer) = ask(
        &c,
        "SELECT count(*) AS n FROM apc_episodes WHERE age_band IN ('30-44', '45-59')",
    )
    .await;
    compare(&rows, &one(Some(35)), true).unwrap();
    assert_eq!(footer, "no cells suppressed; checked against 2 earlier results");
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
        r#"{"table":"apc_episodes","predicate":null,"groups":["age_band"],"released":[["30-44"],["45-59"]]}"#
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
