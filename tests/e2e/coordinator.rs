//! The coordinator's refusals, node-failure policies, cancellation and EXPLAIN.

use std::time::Duration;

use tessera_coordinator::config::NodeEntry;
use tessera_coordinator::{ErrorKind, OnNodeFailure};
use tessera_node::audit::AuditEntry;
use tessera_support::{compare, rows_of, Federation};

async fn refusal(fed: &Federation, sql: &str) -> (ErrorKind, String) {
    match fed.coordinator.query(sql).await {
        Ok(result) => panic!("{sql} was answered with {} rows", result.num_rows()),
        Err(e) => (e.kind, e.message),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_and_unsafe_queries_are_refused_with_the_construct_and_the_alternative() {
    let fed = Federation::start(&["RRK", "RTH", "RJ1"], 1_500, 2).await;
    let cases: &[(&str, &str)] = &[
        (
            "SELECT * FROM apc_episodes",
            "the query reads individual rows of apc_episodes, and rows never leave a trust. Aggregate them instead, \
             e.g. SELECT provider_code, count(*), avg(…) FROM apc_episodes GROUP BY provider_code",
        ),
        (
            "SELECT los_days FROM apc_episodes ORDER BY los_days DESC LIMIT 5",
            "the query reads individual rows of apc_episodes, and rows never leave a trust. Aggregate them instead, \
             e.g. SELECT provider_code, count(*), avg(…) FROM apc_episodes GROUP BY provider_code",
        ),
        (
            "SELECT median(los_days) FROM apc_episodes",
            "median is not supported over federated data yet: exact percentiles cannot be merged from per-trust answers \
             (mergeable sketches are planned). Use avg(…) and stddev(…), or count(*) by a banded value",
        ),
        (
            "SELECT sex, percentile_cont(0.9) WITHIN GROUP (ORDER BY los_days) FROM apc_episodes GROUP BY sex",
            "percentile_cont is not supported over federated data yet: exact percentiles cannot be merged from per-trust \
             answers (mergeable sketches are planned). Use avg(…) and stddev(…), or count(*) by a banded value",
        ),
        (
            "SELECT string_agg(sex, ',') FROM apc_episodes",
            "string_agg would release individual values, so it is not available over federated data; use count(*) or another aggregate",
        ),
        (
            "SELECT count(*) FROM apc_episodes a JOIN ec_attendances e ON a.person_id = e.person_id",
            "joining apc_episodes with ec_attendances would match rows across trusts, which never meet. Add \
             `… AND <left>.provider_code = <right>.provider_code` to the join condition to join each trust's own records",
        ),
        (
            "SELECT count(DISTINCT person_id) FROM apc_episodes",
            "count(DISTINCT person_id) across trusts is not supported yet: per-trust counts of people cannot be added up \
             (a patient seen at two trusts would count twice). Add provider_code to GROUP BY to count people within each \
             trust, or count(*) to count episodes",
        ),
        (
            "SELECT count(DISTINCT sex), count(DISTINCT age_band) FROM apc_episodes",
            "over federated data, DISTINCT may be used with only one column or expression per query",
        ),
        (
            "SELECT sex, avg(los_days) FROM apc_episodes GROUP BY ROLLUP(sex)",
            "with ROLLUP, CUBE or GROUPING SETS over federated data only count, sum, min and max are supported \
             (totals are computed from the released cells); `avg(apc_episodes.los_days)` is not",
        ),
        (
            "SELECT count(*) FROM apc_episodes WHERE person_id IN (SELECT person_id FROM ec_attendances)",
            "sub-queries inside expressions (IN (SELECT …), EXISTS, scalar sub-queries) over federated data are not \
             supported; use a JOIN, or compute the inner aggregate in a CTE and join it",
        ),
        (
            "SELECT treatment_specialty, max(cost_gbp) FROM apc_episodes GROUP BY 1",
            "max(cost_gbp) would release one patient's exact value (cost_gbp is a sensitive measure); use avg(cost_gbp), \
             or count(*) by bands of cost_gbp",
        ),
        ("SELEC 1", "syntax error: sql parser error: Expected: an SQL statement, found: SELEC at Line: 1, Column: 1"),
    ];
    for (sql, message) in cases {
        let (kind, got) = refusal(&fed, sql).await;
        assert_eq!((kind, got.as_str()), (ErrorKind::Query, *message), "{sql}");
    }

    // A trust's own refusal reaches the researcher verbatim, with the trust's name.
    let (kind, got) = refusal(&fed, "SELECT count(*) FROM apc_episodes WHERE person_id = 'abc'").await;
    assert_eq!(kind, ErrorKind::Query);
    let trust = got.split(' ').next().unwrap();
    assert!(["RRK", "RTH", "RJ1"].contains(&trust), "{got}");
    assert_eq!(
        got.strip_prefix(trust).unwrap(),
        " refused: column person_id is an identifier and cannot be compared with a value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_central_plan_and_each_fragment() {
    let fed = Federation::start(&["RRK", "RTH"], 800, 3).await;
    let text = fed
        .coordinator
        .explain("EXPLAIN SELECT sex, avg(los_days) AS mean_los FROM apc_episodes WHERE age_band = '80+' GROUP BY sex ORDER BY sex")
        .await
        .unwrap();
    assert!(
        text.starts_with("Central plan (runs at the coordinator):\nSort: apc_episodes.sex ASC NULLS LAST"),
        "{text}"
    );
    assert!(text.contains("FederatedScan: tables=[apc_episodes]"), "{text}");
    assert!(
        text.ends_with(
            "Fragment 1 (sent to RRK, RTH):\n  SELECT apc_episodes.sex AS g0, sum(apc_episodes.los_days) AS p0, \
             count(apc_episodes.los_days) AS p1 FROM apc_episodes WHERE (apc_episodes.age_band = '80+') GROUP BY \
             apc_episodes.sex\n"
        ),
        "{text}"
    );
}

/// A port nothing listens on.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("https://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_trust_fails_the_query_by_default() {
    let dead = dead_url();
    let fed = Federation::start_with(&["RRK", "RTH"], 600, 4, |c| {
        c.nodes.push(NodeEntry {
            name: "RX1".into(),
            url: dead.clone(),
        });
    })
    .await;
    let err = fed
        .coordinator
        .query("SELECT count(*) FROM apc_episodes")
        .await
        .unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (ErrorKind::Connection, "RX1 unreachable (connection refused)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_partial_answers_the_result_says_which_trusts_answered() {
    let dead = dead_url();
    let fed = Federation::start_with(&["RRK", "RTH"], 600, 4, |c| {
        c.federation.on_node_failure = OnNodeFailure::Partial;
        c.nodes.push(NodeEntry {
            name: "RX1".into(),
            url: dead.clone(),
        });
    })
    .await;
    let sql = "SELECT sex, count(*) AS n, avg(los_days) AS mean_los FROM apc_episodes GROUP BY sex";
    let result = fed.coordinator.query(sql).await.unwrap();
    // The answer is exactly the answering trusts' data.
    compare(
        &rows_of(&result.batches),
        &rows_of(&fed.reference(sql).await.unwrap()),
        false,
    )
    .unwrap();
    assert_eq!(
        result.provenance.summary(),
        "2 of 3 trusts answered (RRK, RTH) — RX1 unreachable (connection refused); data as at 2024-03-31"
    );
    // A trust's refusal is never turned into a partial answer.
    let err = fed
        .coordinator
        .query("SELECT count(*) FROM apc_episodes WHERE person_id LIKE 'a%'")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Query);
    assert!(
        err.message
            .ends_with("refused: column person_id is an identifier and cannot be compared with a value"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_query_cancels_it_at_every_trust() {
    let fed = Federation::start(&["RRK", "RTH"], 3_000, 6).await;
    // A deliberately heavy fragment: every episode paired with every other of its trust.
    let sql = "SELECT count(*) FROM apc_episodes a JOIN apc_episodes b ON a.provider_code = b.provider_code \
               JOIN apc_episodes c ON b.provider_code = c.provider_code";
    let cancelled = tokio::time::timeout(Duration::from_millis(500), fed.coordinator.query(sql)).await;
    assert!(
        cancelled.is_err(),
        "the heavy query finished before it could be cancelled"
    );
    // Each trust records the abandoned request in its audit log.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for node in &fed.nodes {
        loop {
            let log = std::fs::read_to_string(&node.audit_log).unwrap_or_default();
            let entries = log
                .lines()
                .map(|l| serde_json::from_str::<AuditEntry>(l).unwrap())
                .collect::<Vec<_>>();
            if let Some(entry) = entries.last() {
                assert_eq!(entry.reason.as_deref(), Some(tessera_node::node::CANCELLED));
                assert!(entry.sql.contains("JOIN apc_episodes"), "{}", entry.sql);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no cancellation recorded at {}",
                node.running.url()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
