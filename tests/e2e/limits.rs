//! Resource limits at a node: each oversized question fails alone, with a clear error, and the
//! node keeps answering.

use tessera_support::{TestData, TestNode};
use tonic::Code;

/// (what, SQL, expected gRPC code, text the error must contain)
fn oversized() -> Vec<(&'static str, String, Code, &'static str)> {
    let long_sql = format!(
        "SELECT count(*) FROM apc_episodes WHERE treatment_specialty <> '{}'",
        "x".repeat(70_000)
    );
    let codes = (0..1001).map(|i| format!("'{i:03}'")).collect::<Vec<_>>().join(", ");
    let long_in = format!("SELECT count(*) FROM apc_episodes WHERE treatment_specialty IN ({codes})");
    let deep = format!(
        "SELECT count(*) FROM apc_episodes WHERE {}los_days > 1{}",
        "(".repeat(2_000),
        ")".repeat(2_000)
    );
    let deep_arithmetic = format!(
        "SELECT sum({}los_days{}) FROM apc_episodes",
        "(1 + ".repeat(500),
        ")".repeat(500)
    );
    vec![
        (
            "SQL of 70 kB",
            long_sql,
            Code::InvalidArgument,
            "this node reads at most 65536",
        ),
        (
            "an IN list of 1,001 values",
            long_in,
            Code::PermissionDenied,
            "at most 1000",
        ),
        (
            "2,000 nested parentheses",
            deep,
            Code::InvalidArgument,
            "recursion limit",
        ),
        (
            "500 nested additions",
            deep_arithmetic,
            Code::InvalidArgument,
            "recursion limit",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_questions_fail_alone_with_a_clear_error() {
    let data = TestData::generate(&["RRK"], 1_000, 21);
    let node = TestNode::start(&data.node_config("RRK", |_| {})).await;
    let mut failures = Vec::new();
    for (what, sql, code, text) in oversized() {
        match node.ask(&sql).await {
            Ok(_) => failures.push(format!("{what}: answered")),
            Err(e) if e.code() != Some(code) || !e.to_string().contains(text) => {
                failures.push(format!("{what}: {:?} {e}", e.code()))
            }
            Err(_) => {}
        }
        // The node is still up and answers an ordinary question.
        assert!(node.ask("SELECT count(*) FROM apc_episodes").await.is_ok(), "{what}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_fails_alone_while_others_run() {
    let data = TestData::generate(&["RTH"], 40_000, 22);
    // count(DISTINCT …) over people needs the exactness profile; it is the simplest memory hog.
    let config = |mb: u64| {
        data.node_config("RTH", |c| {
            c.node.memory_limit_mb = mb;
            c.policy.profile = tessera_policy::Profile::ExactnessTest;
            c.policy.max_groups = 1_000_000;
        })
    };
    let node = TestNode::start(&config(1)).await;
    // About one group per record, each with a set of distinct patients and diagnoses: far more
    // than 1 MiB however the work is split.
    let heavy = "SELECT admission_date, primary_diagnosis, age_band, sex, imd_decile, \
                 count(DISTINCT person_id) AS patients, count(DISTINCT cost_gbp) AS costs \
                 FROM apc_episodes GROUP BY admission_date, primary_diagnosis, age_band, sex, imd_decile";
    let light = "SELECT sex, count(*) FROM apc_episodes GROUP BY sex";
    let (heavy_answer, light_answer) = tokio::join!(node.ask(heavy), node.ask(light));
    let error = heavy_answer.expect_err("1 MiB is not enough for the distinct sets");
    assert_eq!(error.code(), Some(Code::Internal), "{error}");
    assert_eq!(light_answer.expect("the small query runs").num_rows(), 2);
    // The caller hears only that it failed; the audit log has the reason.
    let log = std::fs::read_to_string(&node.audit_log).unwrap();
    assert!(log.contains("Resources exhausted"), "{log}");
    // Without the limit the same question is answered.
    let unlimited = TestNode::start(&config(0)).await;
    assert!(unlimited.ask(heavy).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_limit_is_not_an_exact_oracle_for_the_number_of_cells() {
    let data = TestData::generate(&["RJ1"], 3_000, 24);
    let oracle = tessera_support::Oracle::load(&[data.trust_dir("RJ1")]);
    let mut diagnoses = oracle
        .apc
        .iter()
        .map(|a| a.primary_diagnosis.clone())
        .collect::<Vec<_>>();
    diagnoses.sort();
    diagnoses.dedup();
    let cells = diagnoses.len();
    assert!(cells >= 20, "enough cells for a limit with room for noise: {cells}");
    // With an exact limit just above the answer, every spelling of the question would be answered.
    let node = TestNode::start(&data.node_config("RJ1", |c| c.policy.max_groups = cells + 1)).await;
    let mut answered = 0;
    let mut refused = 0;
    for k in 0..24 {
        let sql = format!("SELECT primary_diagnosis, count(*) AS n{k} FROM apc_episodes GROUP BY primary_diagnosis");
        match node.ask(&sql).await {
            Ok(answer) => {
                assert_eq!(answer.num_rows(), cells, "an answer is never cut short");
                answered += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("too many groups"), "{e}");
                refused += 1;
            }
        }
    }
    // The same question gets the same limit every time it is asked (no averaging)...
    let same = "SELECT primary_diagnosis, count(*) AS n0 FROM apc_episodes GROUP BY primary_diagnosis";
    let first = node.ask(same).await.is_ok();
    assert_eq!(node.ask(same).await.is_ok(), first);
    // ...but spellings differ, so a refusal does not say how many cells there are.
    assert!(answered > 0 && refused > 0, "answered {answered}, refused {refused}");
}

/// A long flat chain of additions parses without nesting but plans into a very deep tree: 300
/// terms overflowed a worker's stack and aborted the whole service. It is refused before planning,
/// at the coordinator (the service, a node's analysts) and at a node alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_chain_of_operators_is_refused_before_planning() {
    let fed = tessera_support::Federation::start_protected(&["RRK"], 300, 5).await;
    for terms in [300, 5_000] {
        let chain = vec!["1"; terms].join(" + ");
        let sql = format!("SELECT count(*) + {chain} AS n FROM apc_episodes");
        let error = fed.coordinator.query(&sql).await.unwrap_err();
        assert!(
            error.message.contains("nested too deeply"),
            "{terms}: {}",
            error.message
        );
        let at_node = fed.nodes[0].ask(&sql).await.unwrap_err();
        assert!(at_node.to_string().contains("nested too deeply"), "{terms}: {at_node}");
    }
    // An ordinary question still works.
    assert!(fed
        .coordinator
        .query("SELECT count(*) + 1 + 2 AS n FROM apc_episodes")
        .await
        .is_ok());
}

/// Idle sockets from one address cannot use up a node's (or the service's) connections: past
/// `MAX_PER_ADDRESS`, that address's new connections are closed at once, and everyone else is
/// still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_share_of_connections() {
    use tokio::io::AsyncReadExt;
    let data = TestData::generate(&["RRK"], 300, 21);
    let node = TestNode::start(&data.node_config("RRK", |_| {})).await;
    let flooder: std::net::SocketAddr = "127.0.0.2:0".parse().unwrap();
    let connect = || async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(flooder).unwrap();
        socket.connect(node.running.addr).await.unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..tessera_node::listener::MAX_PER_ADDRESS {
        held.push(connect().await);
    }
    // Give the accept loop time to count them.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut one_more = connect().await;
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), one_more.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection over the share stayed open: {read:?}"
    );
    // The coordinator, from another address, is answered as ever.
    assert!(node.ask("SELECT count(*) AS n FROM apc_episodes").await.is_ok());
    drop(held);
}
