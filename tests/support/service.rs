//! `tessera serve` for a test: protected nodes for some trusts, and the service over them with
//! three users — alice (projects `p1`, `p2`), bob (`p2`) and carol (no project).

use std::path::PathBuf;

use tessera_coordinator::{FederationConfig, ServerSection, ServerTls};
use tessera_node::access::users::{hash_password, User, UsersFile};
use tessera_node::serve::{RunningService, Service};
use tessera_protocol::client::ClientError;
use tessera_protocol::service_client::ServiceClient;
use tessera_protocol::tls::ClientTls;
use tessera_schemas::Catalog;

use crate::federation::Federation;

/// Every test user's password.
pub const USER_PASSWORD: &str = "a long enough password";

/// Protected nodes, and the service over them.
pub struct TestService {
    pub fed: Federation,
    pub running: RunningService,
    /// The service's state folder: its audit log and per-project release logs.
    pub state: PathBuf,
    pub users: PathBuf,
}

impl TestService {
    /// Nodes for `providers` with `rows` episodes, and a service over them; `edit` may change
    /// the federation file (e.g. `[server]` limits, more nodes).
    pub async fn start(providers: &[&str], rows: u64, edit: impl FnOnce(&mut FederationConfig)) -> TestService {
        let fed = Federation::start_protected(providers, rows, 41).await;
        let dir = fed.data.dir.path().to_path_buf();
        let users = dir.join("service-users.toml");
        let user = |name: &str, projects: &[&str]| User {
            name: name.into(),
            argon2id: hash_password(USER_PASSWORD).unwrap(),
            projects: projects.iter().map(|p| p.to_string()).collect(),
        };
        UsersFile {
            users: vec![user("alice", &["p1", "p2"]), user("bob", &["p2"]), user("carol", &[])],
        }
        .save(&users)
        .unwrap();
        let state = dir.join("service");
        let mut config = FederationConfig::new(
            "",
            "",
            fed.data
                .trusts
                .iter()
                .zip(&fed.nodes)
                .map(|(t, n)| (t.provider.clone(), n.running.url())),
        );
        config.tls = Some(fed.data.coordinator_tls_section());
        let mut server = ServerSection::new("127.0.0.1:0", &users);
        server.state = state.clone();
        server.tls = Some(ServerTls {
            cert: fed.data.certs.coordinator.cert.clone(),
            key: fed.data.certs.coordinator.key.clone(),
        });
        config.server = Some(server);
        edit(&mut config);
        let service = Service::start(config, &dir.join("federation.toml"), Catalog::builtin()).expect("service starts");
        let running = service
            .spawn("127.0.0.1:0".parse().unwrap(), Some("127.0.0.1:0".parse().unwrap()))
            .await
            .expect("service binds");
        TestService {
            fed,
            running,
            state,
            users,
        }
    }

    /// TLS trusting the test CA, presenting nothing.
    pub fn tls(&self) -> ClientTls {
        let dir = self.fed.data.certs.ca.parent().expect("a folder");
        crate::nodes::anonymous_tls(dir)
    }

    /// A TLS channel to the service, with no credentials (for generic Flight clients).
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.running.url())
            .expect("a valid url")
            .tls_config(self.tls().config())
            .expect("valid TLS settings")
            .connect()
            .await
            .expect("the service accepts the connection")
    }

    /// Signs `user` in with `password`, asking in `project` (their first when `None`).
    pub async fn sign_in_with(
        &self,
        user: &str,
        password: &str,
        project: Option<&str>,
    ) -> Result<ServiceClient, ClientError> {
        ServiceClient::sign_in(
            &self.running.url(),
            Some(&self.tls()),
            user,
            password,
            project.map(str::to_string),
        )
        .await
    }

    /// Signs `user` in with the test password.
    pub async fn sign_in(&self, user: &str, project: Option<&str>) -> ServiceClient {
        self.sign_in_with(user, USER_PASSWORD, project)
            .await
            .expect("sign-in succeeds")
    }

    /// The service's audit lines.
    pub fn audit(&self) -> Vec<tessera_node::audit::AuditEntry> {
        std::fs::read_to_string(self.state.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}
