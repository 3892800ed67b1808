//! Hostile input, generated: fragment tickets, Flight SQL command bytes, credentials headers and
//! SQL strings (deep nesting, huge IN lists, 1 MB identifiers, NUL bytes, arbitrary text). The
//! node always answers with an error or an answer, never panics or stops, and its audit log stays
//! a valid, intact chain of JSON lines.

use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use arrow_flight::Ticket;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use prost::Message;
use tessera_protocol::credentials::Credentials;
use tessera_protocol::FragmentRequest;
use tessera_support::{TestData, TestNode};

/// Cases of the pure decoders (each decoder gets this many).
const DECODER_CASES: u32 = 10_000;

/// Cases sent to a live node (each kind gets this many).
const NODE_CASES: u32 = 1_000;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn fragment_tickets_and_credentials_headers_never_panic_a_decoder() {
    runner(DECODER_CASES)
        .run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
            if let Ok(request) = FragmentRequest::decode(&bytes) {
                prop_assert!(!request.from_coordinator);
            }
            Ok(())
        })
        .unwrap();
    runner(DECODER_CASES)
        .run(&".{0,300}", |header| {
            if let Some(Credentials::Basic { user, password }) = Credentials::parse(&header) {
                prop_assert!(!user.is_empty() && !user.contains(':') && password.len() <= 1024);
            }
            Ok(())
        })
        .unwrap();
}

/// SQL a hostile client might send: fragments of real SQL around generated text.
fn hostile_sql() -> impl Strategy<Value = String> {
    let text = "[ -~\u{0}\u{7f}\u{a0}-\u{2fff}]{0,200}";
    prop_oneof![
        text.prop_map(|t| t.to_string()),
        text.prop_map(|t| format!("SELECT count(*) FROM apc_episodes WHERE sex = '{t}'")),
        text.prop_map(|t| format!("SELECT {t} FROM apc_episodes GROUP BY sex")),
        (1usize..3000).prop_map(|n| format!(
            "SELECT count(*) FROM apc_episodes WHERE {}los_days > 1{}",
            "(".repeat(n),
            ")".repeat(n)
        )),
        (1usize..5000).prop_map(|n| format!(
            "SELECT count(*) FROM apc_episodes WHERE age_band IN ({})",
            vec!["'18-29'"; n].join(",")
        )),
        (0usize..4).prop_map(|k| format!(
            "SELECT count(*) AS \"{}\" FROM apc_episodes",
            "i".repeat([10, 70_000, 300_000, 1_000_000][k])
        )),
        text.prop_map(|t| format!("SELECT count(*) FROM apc_episodes; {t}")),
    ]
}

#[test]
fn a_node_answers_every_hostile_request_and_stays_up() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let data = TestData::generate(&["RJ1"], 300, 31);
    let node = runtime.block_on(TestNode::start(&data.node_config("RJ1", |_| {})));
    let analyst = runtime.block_on(node.analyst());

    // SQL as the coordinator and as an analyst.
    runner(NODE_CASES)
        .run(&(hostile_sql(), any::<bool>()), |(sql, as_analyst)| {
            let client = if as_analyst { &analyst } else { &node.client };
            let answer = runtime.block_on(client.query(&FragmentRequest::new(sql)));
            if let Err(e) = answer {
                prop_assert!(e.code().is_some(), "an error without a status: {e}");
            }
            Ok(())
        })
        .unwrap();

    // Arbitrary bytes as Flight SQL commands and as fragment handles.
    let channel = runtime.block_on(node.channel(&tessera_support::coordinator_tls(&node.certs)));
    let flight = arrow_flight::flight_service_client::FlightServiceClient::new(channel);
    runner(NODE_CASES)
        .run(
            &(proptest::collection::vec(any::<u8>(), 0..512), any::<bool>()),
            |(bytes, as_handle)| {
                let ticket = match as_handle {
                    true => TicketStatementQuery {
                        statement_handle: bytes.into(),
                    }
                    .as_any()
                    .encode_to_vec(),
                    false => bytes,
                };
                let outcome = runtime.block_on(flight.clone().do_get(Ticket { ticket: ticket.into() }));
                if let Ok(response) = outcome {
                    // A well-formed answer may stream; draining it must not break the node either.
                    let _ = runtime.block_on(futures::TryStreamExt::try_collect::<Vec<_>>(response.into_inner()));
                }
                Ok(())
            },
        )
        .unwrap();

    // Still up, and still right.
    let answer = runtime
        .block_on(node.ask("SELECT count(*) AS n FROM apc_episodes"))
        .unwrap();
    assert_eq!(answer.num_rows(), 1);
    // Every line of the audit log is one JSON object, and the chain is intact.
    let log = std::fs::read_to_string(&node.audit_log).unwrap();
    assert!(
        log.lines().count() > NODE_CASES as usize,
        "the hostile requests were audited"
    );
    for line in log.lines() {
        assert!(
            line.chars().all(|c| !c.is_control()),
            "a raw control character in {line:?}"
        );
        serde_json::from_str::<tessera_node::audit::AuditEntry>(line).unwrap();
    }
    tessera_node::audit::verify(&node.audit_log).unwrap();
}
