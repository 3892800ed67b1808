//! Who may ask, in pieces: the sign-in throttle.

use tessera_node::access::throttle::{address_key, Throttle};

#[test]
fn parallel_attempts_are_counted_before_they_are_checked() {
    let throttle = Throttle::default();
    let keys = [("user:alice".to_string(), 5)];
    // Five attempts start together (none has failed yet): the sixth must wait.
    for _ in 0..5 {
        assert!(throttle.begin(&keys).is_ok());
    }
    assert!(throttle.begin(&keys).is_err());
}

#[test]
fn a_success_takes_back_only_its_own_attempt() {
    let throttle = Throttle::default();
    let attacker = [("user:alice".to_string(), 5)];
    for _ in 0..4 {
        throttle.begin(&attacker).unwrap();
    }
    // Alice signs in: her attempt is taken back, the attacker's four stay.
    throttle.begin(&attacker).unwrap();
    throttle.succeeded(&attacker);
    throttle.begin(&attacker).unwrap();
    assert!(throttle.begin(&attacker).is_err());
    assert_eq!(throttle.take_turned_away("user:alice"), 1);
}

#[test]
fn ipv6_addresses_of_one_site_share_a_key() {
    let a = "[2001:db8:1:2:aaaa::1]:5000".parse().ok();
    let b = "[2001:db8:1:2:bbbb::9]:6000".parse().ok();
    assert_eq!(address_key(a), address_key(b));
    assert_eq!(address_key("10.0.0.1:1".parse().ok()), "10.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_is_answered_only_for_approved_projects_and_a_removal_revokes_at_once() {
    use tessera_node::access::projects::ProjectsFile;
    use tessera_protocol::{FragmentRequest, RequestContext};
    use tessera_support::{TestData, TestNode};

    let data = TestData::generate(&["RRK"], 300, 41);
    let file = data.trust_dir("RRK").join("projects.toml");
    let approve = |projects: &[&str]| {
        let file_text = ProjectsFile {
            projects: projects.iter().map(|p| p.to_string()).collect(),
        };
        file_text.save(&file).unwrap();
    };
    approve(&["los-2024", "ae-2025"]);
    let node = TestNode::start(&data.node_config("RRK", |c| c.access.projects = Some(file.clone()))).await;
    let ask = |project: &str| {
        let request = FragmentRequest::with_context(
            "SELECT count(*) FROM apc_episodes",
            RequestContext::new("ana@uni.ac.uk", project),
        );
        let client = node.client.clone();
        async move { client.query(&request).await }
    };
    assert!(ask("los-2024").await.is_ok());
    let error = ask("curiosity").await.unwrap_err();
    assert_eq!(error.code(), Some(tonic::Code::PermissionDenied));
    assert!(
        error.to_string().contains("project `curiosity` is not approved"),
        "{error}"
    );
    // The trust removes a project: the very next question for it is refused.
    approve(&["ae-2025"]);
    assert!(ask("los-2024").await.is_err());
    assert!(ask("ae-2025").await.is_ok());
    let log = std::fs::read_to_string(&node.audit_log).unwrap();
    let decisions = log
        .lines()
        .map(|l| serde_json::from_str::<tessera_node::audit::AuditEntry>(l).unwrap())
        .map(|e| (e.project, e.decision))
        .collect::<Vec<_>>();
    use tessera_node::audit::Decision::{Allowed, Refused};
    assert_eq!(
        decisions,
        [
            ("los-2024".to_string(), Allowed),
            ("curiosity".to_string(), Refused),
            ("los-2024".to_string(), Refused),
            ("ae-2025".to_string(), Allowed),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_are_throttled_even_for_the_right_one_then() {
    use tessera_protocol::credentials::Credentials;
    use tessera_protocol::FragmentRequest;
    use tessera_support::{anonymous_tls, TestData, TestNode, ANALYST, ANALYST_PASSWORD};

    let data = TestData::generate(&["RTH"], 300, 42);
    let node = TestNode::start(&data.node_config("RTH", |_| {})).await;
    let as_analyst = |password: &str| {
        let credentials = Credentials::Basic {
            user: ANALYST.into(),
            password: password.into(),
        };
        let node = &node;
        async move {
            let client = node.client_with(&anonymous_tls(&node.certs), Some(credentials)).await;
            client
                .query(&FragmentRequest::new("SELECT count(*) FROM apc_episodes"))
                .await
        }
    };
    assert!(as_analyst(ANALYST_PASSWORD).await.is_ok());
    for _ in 0..5 {
        let error = as_analyst("guess").await.unwrap_err();
        assert!(error.to_string().contains("wrong user name or password"), "{error}");
    }
    // Now even the right password must wait: guessing costs time, not just tries.
    let error = as_analyst(ANALYST_PASSWORD).await.unwrap_err();
    assert_eq!(error.code(), Some(tonic::Code::Unauthenticated));
    assert!(error.to_string().contains("too many failed sign-ins"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_that_arrives_is_audited_even_one_that_does_not_decode() {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::{Empty, Ticket};
    use tessera_support::{anonymous_tls, TestData, TestNode};

    let data = TestData::generate(&["RJ1"], 300, 43);
    let node = TestNode::start(&data.node_config("RJ1", |_| {})).await;
    let lines = || std::fs::read_to_string(&node.audit_log).unwrap().lines().count();
    let garbage = || Ticket {
        ticket: b"zzz".to_vec().into(),
    };
    // Anonymous: turned away before the ticket is read, and audited.
    let mut anonymous = FlightServiceClient::new(node.channel(&anonymous_tls(&node.certs)).await);
    let before = lines();
    let status = anonymous.do_get(garbage()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    let status = anonymous.list_actions(Empty {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status}");
    assert_eq!(lines(), before + 2);
    // The coordinator's garbage ticket is an invalid argument, audited under its name.
    let mut coordinator = FlightServiceClient::new(node.channel(&tessera_support::coordinator_tls(&node.certs)).await);
    let status = coordinator.do_get(garbage()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    let log = std::fs::read_to_string(&node.audit_log).unwrap();
    let last = serde_json::from_str::<tessera_node::audit::AuditEntry>(log.lines().last().unwrap()).unwrap();
    assert_eq!((last.role.as_str(), last.call.as_str()), ("coordinator", "DoGet"));
    assert!(last.reason.unwrap_or_default().contains("not a Flight SQL command"));
    // A Flight SQL ticket whose handle is not a fragment request: audited too.
    use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
    use prost::Message;
    let forged = TicketStatementQuery {
        statement_handle: br#"{"sql":"SELECT 1","role":"coordinator"}"#.to_vec().into(),
    };
    let before = lines();
    let status = coordinator
        .do_get(Ticket {
            ticket: forged.as_any().encode_to_vec().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status}");
    assert_eq!(lines(), before + 1);
}
