//! Operations: gRPC health and Prometheus metrics of a node.

use std::io::{Read, Write};

use tessera_protocol::FragmentRequest;
use tessera_support::{anonymous_tls, TestData, TestNode};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// The text of `GET /metrics` at `addr`.
fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// The value of the first sample whose line starts with `series`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reports_health_and_counts_requests_for_prometheus() {
    let data = TestData::generate(&["RTH"], 300, 51);
    let node = TestNode::start(&data.node_config("RTH", |_| {})).await;

    // Health needs TLS but no identity: it says whether the Flight service is serving, nothing more.
    let channel = node.channel(&anonymous_tls(&node.certs)).await;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "arrow.flight.protocol.FlightService".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    let metrics = tessera_node::operations::serve_metrics("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let before = scrape(metrics);
    node.ask("SELECT count(*) FROM apc_episodes").await.unwrap();
    node.ask("SELECT person_id FROM apc_episodes").await.unwrap_err();
    let anonymous = node.client_with(&anonymous_tls(&node.certs), None).await;
    anonymous.query(&FragmentRequest::new("SELECT 1")).await.unwrap_err();
    let after = scrape(metrics);
    let grew = |series: &str| {
        let was = before
            .lines()
            .any(|l| l.starts_with(series))
            .then(|| sample(&before, series));
        sample(&after, series) - was.unwrap_or(0.0)
    };
    // Other tests' nodes count into the same process-wide registry: at least ours are there.
    assert!(grew(r#"tessera_node_requests_total{role="coordinator",decision="allowed"}"#) >= 1.0);
    assert!(grew(r#"tessera_node_refusals_total{reason="policy"}"#) >= 1.0);
    assert!(grew(r#"tessera_node_refusals_total{reason="unauthenticated"}"#) >= 1.0);
    assert!(grew("tessera_node_bytes_out_total") > 0.0);
    assert!(after.contains("tessera_node_query_seconds_bucket"), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopping_finishes_the_query_in_flight_and_takes_no_new_ones() {
    let data = TestData::generate(&["RJ1"], 40_000, 52);
    let node = TestNode::start(&data.node_config("RJ1", |c| {
        c.policy.profile = tessera_policy::Profile::ExactnessTest;
        c.policy.max_groups = 1_000_000;
    }))
    .await;
    // A question that takes a while: about one group per record, each with a distinct set.
    let slow = "SELECT admission_date, primary_diagnosis, age_band, sex, imd_decile, \
                count(DISTINCT person_id) AS patients FROM apc_episodes \
                GROUP BY admission_date, primary_diagnosis, age_band, sex, imd_decile";
    let client = node.client.clone();
    let in_flight = tokio::spawn(async move {
        let answer = client.query(&FragmentRequest::new(slow)).await;
        (answer, std::time::Instant::now())
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let url = node.running.url();
    let stop_asked = std::time::Instant::now();
    node.running.stop().await;
    let (answer, answered_at) = in_flight.await.unwrap();
    assert!(
        answered_at > stop_asked,
        "the query must still have been running when the stop came"
    );
    assert!(answer.expect("the query in flight is answered").num_rows() > 1_000);
    // Stopped: nothing new is answered.
    let late = tessera_protocol::NodeClient::connect(&url, Some(&anonymous_tls(&node.certs))).await;
    assert!(late.is_err());
}
