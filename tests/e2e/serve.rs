//! `tessera serve`: the coordinator as a service users sign in to. A signed-in user gets exactly
//! the protected answer the coordinator gives, in one of their own projects, with the service and
//! every trust auditing the same user, project and query id; anyone else gets nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetTables, CommandStatementQuery, ProstMessageExt};
use arrow_flight::FlightDescriptor;
use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use prost::Message;
use tessera_node::audit::{AuditEntry, Decision};
use tessera_node::serve::parameters;
use tessera_protocol::names::{DISCLOSURE_METADATA, PROVENANCE_METADATA};
use tessera_support::{compare, rows_of, Cell, TestService, USER_PASSWORD};
use tonic::Code;

const FINE: &str =
    "SELECT age_band, treatment_specialty, count(*) AS n FROM apc_episodes GROUP BY age_band, treatment_specialty";

fn count_column(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name(name).unwrap();
            let values = column.as_any().downcast_ref::<Int64Array>().unwrap();
            values.iter().flatten().collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_user_gets_the_coordinators_protected_answer_and_small_cells_are_withheld() {
    let service = TestService::start(&["RRK", "RTH"], 3000, |_| {}).await;
    let alice = service.sign_in("alice", None).await;
    for sql in [
        "SELECT sex, count(*) AS n, avg(los_days) AS los FROM apc_episodes GROUP BY sex",
        FINE,
    ] {
        let answer = alice.query(sql).await.unwrap();
        let expected = service.fed.coordinator.query(sql).await.unwrap();
        compare(&rows_of(&answer.batches), &rows_of(&expected.batches), false).unwrap();
        let metadata = answer.schema.metadata();
        assert_eq!(metadata[PROVENANCE_METADATA], expected.provenance.summary());
        assert_eq!(metadata[DISCLOSURE_METADATA], expected.disclosure);
        assert!(metadata[PROVENANCE_METADATA].starts_with("2 of 2 trusts answered"));
    }
    // The fine table: exactly the groups of at least 10 records come back.
    let reference = service
        .fed
        .reference(&format!("SELECT * FROM ({FINE}) WHERE n < 10"))
        .await
        .unwrap();
    let small = rows_of(&reference);
    assert!(small.len() > 5, "the table has small cells to withhold");
    let answer = alice.query(FINE).await.unwrap();
    let released = rows_of(&answer.batches);
    for row in &small {
        assert!(
            !released.iter().any(|r| r[0].matches(&row[0]) && r[1].matches(&row[1])),
            "small cell {row:?} released"
        );
    }
    assert!(count_column(&answer.batches, "n").iter().all(|n| *n >= 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_checked_refusals_are_audited_and_anonymous_callers_learn_nothing() {
    let service = TestService::start(&["RRK"], 500, |_| {}).await;
    let cases = [
        ("alice", "a wrong password", "wrong user name or password"),
        ("mallory", USER_PASSWORD, "wrong user name or password"),
        ("alice", "", "wrong user name or password"),
    ];
    for (user, password, reason) in cases {
        let error = service.sign_in_with(user, password, None).await.err().expect("refused");
        assert_eq!(error.code(), Some(Code::Unauthenticated), "{user}: {error}");
        assert!(error.to_string().contains(reason), "{user}: {error}");
    }
    // No credentials at all: no answer and no table names.
    let channel = service.channel().await;
    let mut anonymous = FlightServiceClient::new(channel);
    let query = CommandStatementQuery {
        query: "SELECT count(*) FROM apc_episodes".into(),
        transaction_id: None,
    };
    let tables = CommandGetTables::default();
    for command in [query.as_any().encode_to_vec(), tables.as_any().encode_to_vec()] {
        let error = anonymous
            .get_flight_info(FlightDescriptor::new_cmd(command))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::Unauthenticated);
    }
    let audit = service.audit();
    let refused = |principal: &str| {
        audit
            .iter()
            .filter(|e| e.role == "unauthenticated" && e.principal == principal && e.decision == Decision::Refused)
            .count()
    };
    assert_eq!(refused("user alice"), 2);
    assert_eq!(refused("user mallory"), 1);
    assert_eq!(refused("anonymous"), 2);
    tessera_node::audit::verify(&service.state.join("audit.jsonl")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_go_to_the_users_own_projects_and_every_audit_records_who_asked() {
    let service = TestService::start(&["RRK", "RTH"], 800, |_| {}).await;
    let sql = "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex";
    // (user, project asked for, project answered in, or the refusal)
    let cases: &[(&str, Option<&str>, Result<&str, &str>)] = &[
        ("alice", None, Ok("p1")),
        ("alice", Some("p2"), Ok("p2")),
        ("bob", None, Ok("p2")),
        (
            "bob",
            Some("p1"),
            Err("you may not ask for project `p1`; your projects: p2"),
        ),
        ("carol", None, Err("you have no projects yet")),
    ];
    for (user, project, expected) in cases {
        let client = service.sign_in(user, *project).await;
        // The budget is read in the same project a question would be asked in (these trusts keep
        // none: they are in `sdc` mode), and refused the same way.
        match (client.budget().await, expected) {
            (Ok(lines), Ok(answered_in)) => {
                let trusts = lines.iter().map(|l| l.trust.as_str()).collect::<Vec<_>>();
                assert_eq!(trusts, ["RRK", "RTH"], "{user}");
                for line in &lines {
                    assert_eq!(
                        (line.project.as_str(), &line.note, &line.error),
                        (*answered_in, &None, &None)
                    );
                }
            }
            (Err(error), Err(reason)) => {
                assert_eq!(error.code(), Some(Code::PermissionDenied), "{user}: {error}");
                assert!(error.to_string().starts_with(reason), "{user}: {error}");
            }
            (outcome, expected) => panic!("{user} {project:?}: budget {outcome:?} but expected {expected:?}"),
        }
        let outcome = client.query(sql).await;
        let last = service.audit().pop().unwrap();
        match (outcome, expected) {
            (Ok(_), Ok(project)) => {
                assert_eq!((last.principal.as_str(), last.project.as_str()), (*user, *project));
                assert_eq!(last.decision, Decision::Allowed);
                // Every trust recorded the same question: user, project and query id.
                for node in &service.fed.nodes {
                    let log = std::fs::read_to_string(&node.audit_log).unwrap();
                    let entry: AuditEntry = log
                        .lines()
                        .map(|l| serde_json::from_str::<AuditEntry>(l).unwrap())
                        .rfind(|e| e.query_id == last.query_id)
                        .expect("the trust audited the service's query id");
                    assert_eq!((entry.requester.as_str(), entry.project.as_str()), (*user, *project));
                    assert_eq!(entry.role, "coordinator");
                }
            }
            (Err(error), Err(reason)) => {
                assert_eq!(error.code(), Some(Code::PermissionDenied), "{user}: {error}");
                assert!(error.to_string().starts_with(reason), "{user}: {error}");
                assert_eq!(last.decision, Decision::Refused);
                assert_eq!(last.principal, *user);
            }
            (outcome, expected) => panic!("{user} {project:?}: {:?} but expected {expected:?}", outcome.err()),
        }
    }
    // Each project's releases are logged in the service's own state folder, apart.
    for project in ["p1", "p2"] {
        let log = std::fs::read_to_string(service.state.join("releases").join(format!("{project}.jsonl"))).unwrap();
        assert!(log.contains("GROUP BY sex"), "{project}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_come_back_with_the_reason_the_cli_prints() {
    let service = TestService::start(&["RRK"], 500, |_| {}).await;
    let alice = service.sign_in("alice", None).await;
    let cases = [
        (
            "SELECT person_id FROM apc_episodes",
            Code::PermissionDenied,
            "the query reads individual rows of apc_episodes",
        ),
        (
            "SELEC count(*) FROM apc_episodes",
            Code::InvalidArgument,
            "syntax error",
        ),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", Code::PermissionDenied, ""),
    ];
    for (sql, code, reason) in cases {
        let expected = service.fed.coordinator.query(sql).await.unwrap_err().message;
        let error = alice.query(sql).await.unwrap_err();
        assert_eq!(error.code(), Some(code), "{sql}: {error}");
        assert_eq!(error.to_string(), expected, "{sql}");
        assert!(expected.contains(reason), "{sql}: {expected}");
    }
}

/// A Flight SQL client signed in as `user`, as BI tools use one.
async fn flight_sql_client(service: &TestService, user: &str) -> FlightSqlServiceClient<tonic::transport::Channel> {
    let channel = service.channel().await;
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake(user, USER_PASSWORD).await.unwrap();
    client
}

fn parameters_batch(values: &[&str]) -> RecordBatch {
    let fields = (0..values.len())
        .map(|i| Field::new(format!("p{i}"), DataType::Utf8, true))
        .collect::<Vec<_>>();
    let columns = values
        .iter()
        .map(|v| Arc::new(StringArray::from(vec![*v])) as Arc<dyn Array>)
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_parameters_as_values_and_announce_the_schema_they_stream() {
    let service = TestService::start(&["RRK", "RTH"], 2000, |_| {}).await;
    let alice = service.sign_in("alice", None).await;
    let mut client = flight_sql_client(&service, "alice").await;
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "SELECT count(*) AS n FROM apc_episodes WHERE sex = ?",
            &["F"],
            "SELECT count(*) AS n FROM apc_episodes WHERE sex = 'F'",
        ),
        (
            "SELECT count(*) AS n FROM apc_episodes WHERE age_band = $2 AND sex = $1",
            &["M", "80+"],
            "SELECT count(*) AS n FROM apc_episodes WHERE age_band = '80+' AND sex = 'M'",
        ),
        // A value is a value: the quote does not end the string.
        (
            "SELECT count(*) AS n FROM apc_episodes WHERE sex = ?",
            &["F' OR '1'='1"],
            "SELECT count(*) AS n FROM apc_episodes WHERE sex = 'F'' OR ''1''=''1'",
        ),
    ];
    for (sql, values, literal) in cases {
        let expected = alice.query(literal).await.unwrap();
        let mut prepared = client.prepare(sql.to_string(), None).await.unwrap();
        prepared.set_parameters(parameters_batch(values)).unwrap();
        // Run twice: the same statement, the same answer.
        for _ in 0..2 {
            let info = prepared.execute().await.unwrap();
            let announced = info.clone().try_decode_schema().unwrap();
            let ticket = info.endpoint[0].ticket.clone().unwrap();
            let mut stream = client.do_get(ticket).await.unwrap();
            let mut batches = Vec::new();
            while let Some(batch) = stream.try_next().await.unwrap() {
                batches.push(batch);
            }
            assert_eq!(stream.schema().unwrap().as_ref(), &announced, "{sql}");
            compare(&rows_of(&batches), &rows_of(&expected.batches), false).unwrap();
        }
        prepared.close().await.unwrap();
    }
    let total = count_column(
        &alice
            .query("SELECT count(*) AS n FROM apc_episodes")
            .await
            .unwrap()
            .batches,
        "n",
    );
    let injected = alice
        .query("SELECT count(*) AS n FROM apc_episodes WHERE sex = 'F'' OR ''1''=''1'")
        .await
        .unwrap();
    assert_ne!(
        count_column(&injected.batches, "n"),
        total,
        "the injection must not select every record"
    );
    // Executing without binding the parameter is refused with a reason.
    let mut unbound = client
        .prepare("SELECT count(*) FROM apc_episodes WHERE sex = ?".into(), None)
        .await
        .unwrap();
    let error = unbound.execute().await.unwrap_err().to_string();
    assert!(error.contains("bind them before executing"), "{error}");
}

#[test]
fn parameters_become_literals_never_sql() {
    use datafusion::common::ScalarValue;
    let cases: &[(&str, Vec<ScalarValue>, Result<&str, &str>)] = &[
        (
            "SELECT count(*) FROM t WHERE a = ? AND b = ?",
            vec![ScalarValue::Int64(Some(3)), ScalarValue::from("x' OR 1=1 --")],
            Ok("SELECT count(*) FROM t WHERE a = 3 AND b = 'x'' OR 1=1 --'"),
        ),
        (
            "SELECT count(*) FROM t WHERE a = $2 OR b = $1",
            vec![ScalarValue::from("p"), ScalarValue::Float64(Some(1.5))],
            Ok("SELECT count(*) FROM t WHERE a = 1.5 OR b = 'p'"),
        ),
        (
            "SELECT count(*) FROM t WHERE d >= ?",
            vec![ScalarValue::Date32(Some(19_723))],
            Ok("SELECT count(*) FROM t WHERE d >= DATE '2024-01-01'"),
        ),
        (
            "SELECT count(*) FROM t WHERE a = ? OR b = $1",
            vec![],
            Err("either as ? or as $1"),
        ),
        (
            "SELECT count(*) FROM t WHERE a = ?",
            vec![],
            Err("takes 1 parameters; 0 were bound"),
        ),
        (
            "SELECT count(*) FROM t WHERE a = ?",
            vec![ScalarValue::Float64(Some(f64::NAN))],
            Err("cannot be bound"),
        ),
        ("SELECT 1; SELECT 2", vec![], Err("one SQL statement, not 2")),
        // Printed as is, a backslash before the doubled quote would be read as an escape.
        (
            "SELECT count(*) FROM t WHERE a = ?",
            vec![ScalarValue::from("\\' OR true --")],
            Err("backslash"),
        ),
    ];
    for (sql, values, expected) in cases {
        match (parameters::bind(sql, values), expected) {
            (Ok(bound), Ok(expected)) => assert_eq!(bound, *expected, "{sql}"),
            (Err(error), Err(reason)) => assert!(error.contains(reason), "{sql}: {error}"),
            (outcome, expected) => panic!("{sql}: {outcome:?}, expected {expected:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bi_tools_can_browse_the_catalog_without_seeing_data() {
    let service = TestService::start(&["RRK"], 300, |_| {}).await;
    let mut client = flight_sql_client(&service, "bob").await;
    let request = CommandGetTables {
        include_schema: true,
        ..Default::default()
    };
    let info = client.get_tables(request).await.unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    let mut stream = client.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap();
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await.unwrap() {
        batches.push(batch);
    }
    assert_eq!(stream.schema().unwrap().as_ref(), &announced);
    let names: Vec<String> = rows_of(&batches)
        .iter()
        .map(|r| match &r[2] {
            Cell::Str(t) => t.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<String> = tessera_schemas::Catalog::builtin()
        .contracts()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names.len(), expected.len());
    for name in expected {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for (what, info) in [
        ("catalogs", client.get_catalogs().await.unwrap()),
        ("table types", client.get_table_types().await.unwrap()),
        ("sql info", client.get_sql_info(vec![]).await.unwrap()),
        (
            "xdbc types",
            client
                .get_xdbc_type_info(arrow_flight::sql::CommandGetXdbcTypeInfo { data_type: None })
                .await
                .unwrap(),
        ),
    ] {
        let stream = client.do_get(info.endpoint[0].ticket.clone().unwrap()).await.unwrap();
        let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
        assert!(batches.iter().map(RecordBatch::num_rows).sum::<usize>() > 0, "{what}");
    }
    // The service has one action of its own (the budget); the node's are not passed through.
    for kind in [tessera_protocol::names::RESERVE_ACTION, "anything"] {
        let action = arrow_flight::Action {
            r#type: kind.into(),
            body: Default::default(),
        };
        let error = client.do_action(action).await.unwrap_err();
        assert!(
            error.to_string().contains("this service has no action"),
            "{kind}: {error}"
        );
        let last = service.audit().pop().unwrap();
        assert_eq!(
            (last.decision, last.principal.as_str()),
            (Decision::Error, "bob"),
            "{kind}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_has_at_most_their_share_of_questions_running_and_a_hanging_trust_is_named() {
    // A trust that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("https://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let service = TestService::start(&["RRK"], 300, |config| {
        config.nodes.push(tessera_coordinator::config::NodeEntry {
            name: "RSL".into(),
            url: silent_url,
        });
        config.federation.node_timeout_secs = 3;
        if let Some(server) = &mut config.server {
            server.max_running_per_user = 1;
        }
    })
    .await;
    let alice = service.sign_in("alice", None).await;
    let bob = service.sign_in("bob", None).await;
    let sql = "SELECT count(*) AS n FROM apc_episodes";
    let first = tokio::spawn({
        let alice = alice.clone();
        async move { alice.query(sql).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // alice's second question is refused at once; bob, another user, is still admitted.
    let second = alice.query(sql).await.unwrap_err();
    assert_eq!(second.code(), Some(Code::PermissionDenied));
    assert!(second.to_string().contains("1 questions running"), "{second}");
    let bobs = tokio::time::timeout(Duration::from_secs(20), bob.query(sql))
        .await
        .unwrap()
        .unwrap_err();
    assert!(bobs.to_string().starts_with("RSL"), "{bobs}");
    let first = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(first.code(), Some(Code::Unavailable), "{first}");
    assert!(first.to_string().starts_with("RSL"), "{first}");
    held.abort();
    let decisions: BTreeMap<String, usize> = service.audit().iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(format!("{}:{:?}", e.principal, e.decision)).or_default() += 1;
        m
    });
    assert_eq!(decisions.get("alice:Refused"), Some(&1), "{decisions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_are_answered_at_once_and_a_removed_user_is_signed_out() {
    let service = TestService::start(&["RRK", "RTH"], 800, |_| {}).await;
    let sql = "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex";
    let expected = service.fed.coordinator.query(sql).await.unwrap();
    let mut clients = Vec::new();
    for user in ["alice", "bob", "alice", "bob"] {
        clients.push(service.sign_in(user, Some("p2")).await);
    }
    // Two questions per user at once: each user's limit, all answered.
    let answers = futures::future::join_all(clients.iter().map(|c| c.query(sql))).await;
    for answer in answers {
        compare(&rows_of(&answer.unwrap().batches), &rows_of(&expected.batches), false).unwrap();
    }
    // Removing bob ends his session at once; alice's goes on.
    let mut users = tessera_node::access::users::UsersFile::load(&service.users).unwrap();
    assert!(users.remove("bob"));
    users.save(&service.users).unwrap();
    let error = clients[1].query(sql).await.unwrap_err();
    assert_eq!(error.code(), Some(Code::Unauthenticated), "{error}");
    assert!(clients[0].query(sql).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_that_goes_down_is_named_and_asked_again_when_it_returns() {
    let mut service = TestService::start(&["RRK", "RTH"], 600, |_| {}).await;
    let alice = service.sign_in("alice", None).await;
    let sql = "SELECT count(*) AS n FROM apc_episodes";
    let before = alice.query(sql).await.unwrap();
    let rth = service.fed.nodes.pop().unwrap();
    let addr = rth.running.addr;
    rth.running.stop().await;
    let error = alice.query(sql).await.unwrap_err();
    assert_eq!(error.code(), Some(Code::Unavailable), "{error}");
    assert!(error.to_string().starts_with("RTH unreachable"), "{error}");
    let config = service.fed.data.node_config("RTH", |c| c.policy.max_groups = 1_000_000);
    let node = tessera_node::node::TrustNode::start(&config, &tessera_schemas::Catalog::builtin())
        .await
        .unwrap();
    let _running = node.spawn(addr).await.expect("the port is free again");
    let after = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match alice.query(sql).await {
                Ok(answer) => break answer,
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
    .await
    .expect("the service asks the trust again");
    compare(&rows_of(&after.batches), &rows_of(&before.batches), false).unwrap();
}
