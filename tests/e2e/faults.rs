//! Faults at a trust: a node that hangs, breaks off mid-answer, answers with the wrong schema, is
//! turned off, or comes back. The coordinator answers with a clear error naming the trust (or a
//! flagged partial result where the federation allows it), never hangs and never merges a
//! mismatched batch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use futures::{stream, StreamExt};
use tessera_coordinator::{Coordinator, FederationConfig, FragmentService, FragmentStream, OnNodeFailure, TrustLink};
use tessera_disclosure::DisclosureConfig;
use tessera_protocol::client::ClientError;
use tessera_protocol::FragmentRequest;
use tessera_schemas::Catalog;
use tessera_support::Federation;

/// A trust that misbehaves in one way.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Never answers.
    Hangs,
    /// Sends one batch, then the connection drops.
    BreaksOff,
    /// Answers text where a count is expected.
    WrongType,
    /// Answers with an extra column.
    WrongWidth,
    /// Answers a fractional number where a count is expected (a cast would truncate it).
    Fractional,
}

struct Faulty(Fault);

fn counts(values: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("p0", DataType::Int64, true)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
}

#[async_trait]
impl FragmentService for Faulty {
    async fn stream(&self, _request: &FragmentRequest) -> Result<FragmentStream, ClientError> {
        match self.0 {
            Fault::Hangs => futures::future::pending().await,
            Fault::BreaksOff => Ok(stream::iter(vec![
                Ok(counts(&[5])),
                Err(ClientError::Status(tonic::Status::unavailable(
                    "connection reset by peer",
                ))),
            ])
            .boxed()),
            Fault::WrongType => {
                let schema = Arc::new(Schema::new(vec![Field::new("p0", DataType::Utf8, true)]));
                let batch = RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["999"]))]).unwrap();
                Ok(stream::iter(vec![Ok(batch)]).boxed())
            }
            Fault::Fractional => {
                let schema = Arc::new(Schema::new(vec![Field::new("p0", DataType::Float64, true)]));
                let batch = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![2.9]))]).unwrap();
                Ok(stream::iter(vec![Ok(batch)]).boxed())
            }
            Fault::WrongWidth => {
                let schema = Arc::new(Schema::new(vec![
                    Field::new("p0", DataType::Int64, true),
                    Field::new("p1", DataType::Int64, true),
                ]));
                let columns = vec![
                    Arc::new(Int64Array::from(vec![1])) as _,
                    Arc::new(Int64Array::from(vec![2])) as _,
                ];
                Ok(stream::iter(vec![Ok(RecordBatch::try_new(schema, columns).unwrap())]).boxed())
            }
        }
    }
}

/// A trust that answers every fragment with a count of 7.
struct Sevens;

#[async_trait]
impl FragmentService for Sevens {
    async fn stream(&self, _request: &FragmentRequest) -> Result<FragmentStream, ClientError> {
        Ok(stream::iter(vec![Ok(counts(&[7]))]).boxed())
    }
}

/// A coordinator over a good trust `GOOD` and a faulty one `BAD`, with exact answers (the fakes
/// send no cell keys) and a one-second deadline.
fn coordinator(fault: Fault, on_failure: OnNodeFailure) -> Coordinator {
    let mut config = FederationConfig::new(
        "faults",
        "faults",
        [("GOOD".into(), String::new()), ("BAD".into(), String::new())],
    );
    config.disclosure = DisclosureConfig::off();
    config.federation.node_timeout_secs = 1;
    config.federation.on_node_failure = on_failure;
    let links = vec![
        TrustLink {
            name: "GOOD".into(),
            service: Arc::new(Sevens),
        },
        TrustLink {
            name: "BAD".into(),
            service: Arc::new(Faulty(fault)),
        },
    ];
    Coordinator::with_links(config, &Catalog::builtin(), links, Default::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_trust_gives_an_error_naming_it_within_the_deadline_and_nothing_is_merged() {
    let cases = [
        (Fault::Hangs, "BAD did not answer within 1 s"),
        (Fault::BreaksOff, "BAD unreachable"),
        (
            Fault::WrongType,
            "BAD failed: answered column p0 as Utf8, expected Int64",
        ),
        (Fault::WrongWidth, "BAD failed: answered with 2 columns, expected 1"),
        (
            Fault::Fractional,
            "BAD failed: answered column p0 as Float64, expected Int64",
        ),
    ];
    for (fault, expected) in cases {
        let c = coordinator(fault, OnNodeFailure::Fail);
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            c.query("SELECT count(*) AS n FROM apc_episodes"),
        )
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: the coordinator hung"));
        let error = answer.expect_err(&format!("{fault:?} must not be merged"));
        assert!(error.message.contains(expected), "{fault:?}: {}", error.message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_policy_allows_a_partial_result_is_flagged_and_holds_only_the_good_trust() {
    for fault in [Fault::Hangs, Fault::BreaksOff, Fault::WrongType] {
        let c = coordinator(fault, OnNodeFailure::Partial);
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            c.query("SELECT count(*) AS n FROM apc_episodes"),
        )
        .await
        .unwrap_or_else(|_| panic!("{fault:?}: the coordinator hung"));
        match result {
            Ok(result) => {
                let n = result.batches[0]
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0);
                // Only GOOD's 7: nothing of BAD's answer (5, or "999") is merged.
                assert_eq!(n, 7, "{fault:?}");
                assert!(
                    result
                        .provenance
                        .summary()
                        .starts_with("1 of 2 trusts answered (GOOD) — BAD "),
                    "{fault:?}: {}",
                    result.provenance.summary()
                );
            }
            // A stream that fails after its first batch cannot be taken back: the query fails.
            Err(e) => assert!(e.message.contains("BAD"), "{fault:?}: {}", e.message),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_turned_off_is_named_and_one_restarted_on_its_port_is_asked_again() {
    let fed = Federation::start(&["RRK", "RTH"], 800, 23).await;
    let sql = "SELECT count(*) AS n FROM apc_episodes";
    let before = fed.coordinator.query(sql).await.unwrap();
    let mut nodes = fed.nodes;
    let rth = nodes.pop().unwrap();
    let addr = rth.running.addr;
    rth.running.stop().await;
    let error = fed.coordinator.query(sql).await.unwrap_err();
    assert!(error.message.starts_with("RTH unreachable"), "{}", error.message);
    // The same node comes back on the same port: the coordinator reconnects by itself.
    let config = fed.data.node_config("RTH", |c| {
        c.policy.max_groups = 1_000_000;
        c.policy.profile = tessera_policy::Profile::ExactnessTest;
    });
    let node = tessera_node::node::TrustNode::start(&config, &Catalog::builtin())
        .await
        .unwrap();
    let _running = node.spawn(addr).await.expect("the port is free again");
    let after = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match fed.coordinator.query(sql).await {
                Ok(result) => break result,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("the coordinator reconnects to the restarted node");
    tessera_support::compare(
        &tessera_support::rows_of(&after.batches),
        &tessera_support::rows_of(&before.batches),
        false,
    )
    .unwrap();
    drop(nodes);
}
