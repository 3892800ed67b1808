//! Generic Flight SQL clients can browse a node, run aggregates by the standard
//! GetFlightInfo → DoGet path and by prepared statements, and are refused like anyone else.

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use arrow_flight::FlightInfo;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use futures::TryStreamExt;
use tessera_node::audit::{AuditEntry, Decision};
use tessera_protocol::tls::ClientTls;
use tessera_support::{
    anonymous_tls, coordinator_tls, rows_of, Cell, Oracle, TestData, TestNode, ANALYST, ANALYST_PASSWORD,
};
use tonic::transport::Channel;

/// A standard Flight SQL client over TLS presenting what `tls` holds.
async fn client_with(node: &TestNode, tls: &ClientTls) -> FlightSqlServiceClient<Channel> {
    FlightSqlServiceClient::new(node.channel(tls).await)
}

/// The federation's coordinator as a generic Flight SQL client: it names who asked in headers.
async fn client(node: &TestNode) -> FlightSqlServiceClient<Channel> {
    let mut client = client_with(node, &coordinator_tls(&node.certs)).await;
    client.set_header("x-tessera-requester", "dbeaver@rth");
    client.set_header("x-tessera-project", "browse");
    client
}

async fn fetch(client: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let stream = client.do_get(endpoint.ticket.unwrap()).await.unwrap();
        batches.extend(stream.try_collect::<Vec<_>>().await.unwrap());
    }
    batches
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).unwrap().as_string::<i32>().clone();
            (0..a.len()).map(move |i| a.value(i).to_string()).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_flight_sql_clients_browse_query_and_are_refused() {
    let data = TestData::generate(&["RTH"], 2_000, 5);
    let oracle = Oracle::load(&[data.trust_dir("RTH")]);
    let node = TestNode::start(&data.node_config("RTH", |_| {})).await;
    let mut client = client(&node).await;

    // Browse: catalogs, schemas, tables (with their Arrow schemas), table types, server info.
    let info = client.get_catalogs().await.unwrap();
    assert_eq!(strings(&fetch(&mut client, info).await, "catalog_name"), ["tessera"]);
    let info = client
        .get_db_schemas(CommandGetDbSchemas {
            catalog: None,
            db_schema_filter_pattern: None,
        })
        .await
        .unwrap();
    assert_eq!(strings(&fetch(&mut client, info).await, "db_schema_name"), ["public"]);
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: Some("%_episodes".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .unwrap();
    let tables = fetch(&mut client, info).await;
    assert_eq!(strings(&tables, "table_name"), ["apc_episodes"]);
    let info = client
        .get_tables(CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: false,
        })
        .await
        .unwrap();
    assert_eq!(
        strings(&fetch(&mut client, info).await, "table_name"),
        [
            "apc_episodes",
            "ec_attendances",
            "op_appointments",
            "ref_unit_costs",
            "workforce_finance_monthly"
        ]
    );
    let info = client.get_table_types().await.unwrap();
    assert_eq!(
        strings(&fetch(&mut client, info).await, "table_type"),
        ["TABLE", "VIEW"]
    );
    let info = client
        .get_sql_info(vec![SqlInfo::FlightSqlServerName, SqlInfo::FlightSqlServerReadOnly])
        .await
        .unwrap();
    let sql_info = fetch(&mut client, info).await;
    assert_eq!(sql_info.iter().map(|b| b.num_rows()).sum::<usize>(), 2);

    // A statement: GetFlightInfo checks and describes it; DoGet runs it.
    let info = client
        .execute(
            "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex ORDER BY sex".into(),
            None,
        )
        .await
        .unwrap();
    let batches = fetch(&mut client, info).await;
    let expected_f = oracle.apc.iter().filter(|a| a.sex == "F").count() as i64;
    let rows = rows_of(&batches);
    assert_eq!(rows.len(), 2);
    assert!(matches!((&rows[0][0], &rows[0][1]), (Cell::Str(s), Cell::Int(n)) if s == "F" && *n == expected_f));

    // A prepared statement, as JDBC drivers use.
    let mut prepared = client
        .prepare("SELECT count(*) AS episodes FROM apc_episodes".into(), None)
        .await
        .unwrap();
    assert_eq!(prepared.dataset_schema().unwrap().field(0).name(), "episodes");
    let info = prepared.execute().await.unwrap();
    let batches = fetch(&mut client, info).await;
    assert!(matches!(rows_of(&batches)[0][0], Cell::Int(n) if n == oracle.apc.len() as i64));
    prepared.close().await.unwrap();

    // Row-level questions are refused at GetFlightInfo and at prepare time, with the reason.
    let err = client
        .execute("SELECT person_id FROM apc_episodes".into(), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refused: the query returns individual rows of apc_episodes"),
        "{err}"
    );
    let err = client
        .prepare("SELECT cost_gbp FROM apc_episodes".into(), None)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("refused: the query returns individual rows of apc_episodes"),
        "{err}"
    );

    // The audit log names the client from its headers and the call that carried each query.
    let log = std::fs::read_to_string(&node.audit_log).unwrap();
    let entries = log
        .lines()
        .map(|l| serde_json::from_str::<AuditEntry>(l).unwrap())
        .collect::<Vec<_>>();
    let summary = entries
        .iter()
        .map(|e| (e.call.as_str(), e.decision, e.requester.as_str(), e.project.as_str()))
        .collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            ("DoGet", Decision::Allowed, "dbeaver@rth", "browse"),
            ("DoGet", Decision::Allowed, "dbeaver@rth", "browse"),
            ("GetFlightInfo", Decision::Refused, "dbeaver@rth", "browse"),
            ("CreatePreparedStatement", Decision::Refused, "dbeaver@rth", "browse"),
        ]
    );
    node.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_ticket_is_rechecked_not_trusted() {
    // A client can put any SQL in a ticket without calling GetFlightInfo: the node re-plans and re-checks it.
    let data = TestData::generate(&["RJ1"], 500, 9);
    let node = TestNode::start(&data.node_config("RJ1", |_| {})).await;
    let mut client = client(&node).await;
    let forged = tessera_protocol::FragmentRequest::new("SELECT person_id, cost_gbp FROM apc_episodes");
    let ticket = arrow_flight::sql::TicketStatementQuery {
        statement_handle: forged.encode().into(),
    };
    use arrow_flight::sql::ProstMessageExt;
    use prost::Message;
    let ticket = arrow_flight::Ticket {
        ticket: ticket.as_any().encode_to_vec().into(),
    };
    let err = match client.do_get(ticket).await {
        Ok(stream) => stream.try_collect::<Vec<_>>().await.err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    assert!(err
        .unwrap_or_default()
        .contains("refused: the query returns individual rows of apc_episodes"));
    // Garbage in a ticket is an invalid argument, not a crash.
    let junk = arrow_flight::sql::TicketStatementQuery {
        statement_handle: vec![0xff, 0x00, 0x13].into(),
    };
    let ticket = arrow_flight::Ticket {
        ticket: junk.as_any().encode_to_vec().into(),
    };
    let err = client
        .do_get(ticket)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("the ticket is not a Tessera fragment request"), "{err}");
    // Identity fields in a ticket are cut to what an audit line keeps, like those in headers.
    let context = tessera_protocol::RequestContext::new("r".repeat(10_000), "p".repeat(10_000));
    let padded = tessera_protocol::FragmentRequest::with_context("SELECT count(*) FROM apc_episodes", context);
    let ticket = arrow_flight::Ticket {
        ticket: arrow_flight::sql::TicketStatementQuery {
            statement_handle: padded.encode().into(),
        }
        .as_any()
        .encode_to_vec()
        .into(),
    };
    client
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let log = std::fs::read_to_string(&node.audit_log).unwrap();
    let last = serde_json::from_str::<AuditEntry>(log.lines().last().unwrap()).unwrap();
    let max = tessera_protocol::context::MAX_FIELD_CHARS;
    assert_eq!((last.requester.len(), last.project.len()), (max, max));
    node.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_signs_in_with_the_handshake_and_gets_only_protected_cells() {
    let data = TestData::generate(&["RTH"], 2_000, 5);
    let oracle = Oracle::load(&[data.trust_dir("RTH")]);
    let node = TestNode::start(&data.node_config("RTH", |_| {})).await;

    // Anyone else learns nothing, not even the table names; a wrong password gets no token.
    let mut anonymous = client_with(&node, &anonymous_tls(&node.certs)).await;
    let status = anonymous.get_catalogs().await.unwrap_err().to_string();
    assert!(status.contains("no credentials"), "{status}");
    let error = anonymous
        .handshake(ANALYST, "wrong password")
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("wrong user name or password"), "{error}");

    let mut client = client_with(&node, &anonymous_tls(&node.certs)).await;
    client.handshake(ANALYST, ANALYST_PASSWORD).await.unwrap();
    // A claimed identity is ignored: the audit log names the signed-in user.
    client.set_header("x-tessera-requester", "someone.else@nhs.net");
    let info = client.get_catalogs().await.unwrap();
    assert_eq!(strings(&fetch(&mut client, info).await, "catalog_name"), ["tessera"]);

    // One patient's cost is not recoverable: a cell of one record is withheld.
    let first = &oracle.apc[0];
    let one = format!(
        "SELECT count(*) AS n, avg(cost_gbp) AS cost FROM apc_episodes WHERE person_id = '{}'",
        first.person_id
    );
    let error = client.execute(one, None).await.unwrap_err().to_string();
    assert!(error.contains("person_id"), "{error}");
    // Fine cells: every released count is at least the threshold, and some are withheld.
    let sql = "SELECT treatment_specialty, age_band, sex, count(*) AS n FROM apc_episodes \
               GROUP BY treatment_specialty, age_band, sex";
    let info = client.execute(sql.into(), None).await.unwrap();
    let schema = info.clone().try_decode_schema().unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(
        batches[0].schema().metadata(),
        schema.metadata(),
        "announced and streamed schemas agree"
    );
    let released = rows_of(&batches)
        .into_iter()
        .filter_map(|row| match row[3] {
            Cell::Int(n) => Some(n),
            _ => None,
        })
        .collect::<Vec<_>>();
    let cells = oracle.apc.iter().map(|a| (&a.treatment_specialty, &a.age_band, &a.sex));
    let exact = group_sizes(cells);
    assert!(exact.iter().any(|n| *n < 10), "the question has small cells");
    assert!(
        !released.is_empty() && released.iter().all(|n| *n >= 10),
        "{released:?}"
    );
    assert!(released.len() < exact.len(), "small cells are withheld");
    // Prepared statements run through the same protection.
    let mut prepared = client
        .prepare("SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex".into(), None)
        .await
        .unwrap();
    let info = prepared.execute().await.unwrap();
    let batches = fetch(&mut client, info).await;
    assert_eq!(rows_of(&batches).len(), 2);
    prepared.close().await.unwrap();

    let log = std::fs::read_to_string(&node.audit_log).unwrap();
    let entries = log
        .lines()
        .map(|l| serde_json::from_str::<AuditEntry>(l).unwrap())
        .collect::<Vec<_>>();
    let refused = entries
        .iter()
        .filter(|e| e.role == "unauthenticated")
        .collect::<Vec<_>>();
    assert_eq!(refused.len(), 2, "{log}");
    assert!(entries
        .iter()
        .filter(|e| e.role == "analyst")
        .all(|e| e.principal == ANALYST && e.requester == ANALYST));
    assert!(entries.iter().all(|e| e.requester != "someone.else@nhs.net"));
    node.running.stop().await;
}

/// The number of records in each distinct group.
fn group_sizes<K: Ord>(keys: impl Iterator<Item = K>) -> Vec<usize> {
    let mut sizes = std::collections::BTreeMap::new();
    for key in keys {
        *sizes.entry(key).or_insert(0) += 1;
    }
    sizes.into_values().collect()
}
