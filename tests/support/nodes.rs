//! Trusts for a test: generated data in a temporary folder with development certificates, and
//! nodes serving it in-process over TLS.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tessera_node::access::users::{hash_password, User, UsersFile};
use tessera_node::config::NodeTls;
use tessera_node::node::{RunningNode, TrustNode};
use tessera_node::NodeConfig;
use tessera_protocol::client::{ClientError, NodeAnswer, NodeClient};
use tessera_protocol::credentials::Credentials;
use tessera_protocol::dev_certs::{write_dev_certs, DevCerts};
use tessera_protocol::tls::ClientTls;
use tessera_protocol::{FragmentRequest, RequestContext};
use tessera_schemas::gen::{generate, GenConfig, GeneratedTrust};
use tessera_schemas::Catalog;

/// The as-at date every test trust reports.
pub const TEST_AS_AT: &str = "2024-03-31";

/// The analyst every test trust knows (see [`ANALYST_PASSWORD`]).
pub const ANALYST: &str = "analyst";

/// [`ANALYST`]'s password.
pub const ANALYST_PASSWORD: &str = "correct horse battery staple";

/// The users file of every test trust, hashed once per test run.
fn users_file() -> &'static UsersFile {
    static USERS: OnceLock<UsersFile> = OnceLock::new();
    USERS.get_or_init(|| UsersFile {
        users: vec![User {
            name: ANALYST.into(),
            argon2id: hash_password(ANALYST_PASSWORD).expect("hashes"),
            projects: vec![],
        }],
    })
}

/// The folder holding the development certificates of the node whose config is `config`.
fn certs_dir(config: &NodeConfig) -> PathBuf {
    let tls = config.tls_files().expect("test nodes have TLS");
    tls.client_ca.parent().expect("a folder").to_path_buf()
}

/// TLS as the federation's coordinator (its certificate, signed by the test CA).
pub fn coordinator_tls(certs: &Path) -> ClientTls {
    presenting(certs, "coordinator")
}

/// TLS presenting the certificate `name.pem` of the test CA (e.g. another trust's node key).
pub fn presenting(certs: &Path, name: &str) -> ClientTls {
    ClientTls::load(
        &certs.join("ca.pem"),
        Some((
            &certs.join(format!("{name}.pem")),
            &certs.join(format!("{name}-key.pem")),
        )),
    )
    .expect("test certificates load")
}

/// The coordinator's `[tls]` for development certificates: their CA, the coordinator's
/// certificate and key.
pub fn tls_section(certs: &DevCerts) -> tessera_coordinator::TlsSection {
    tessera_coordinator::TlsSection {
        ca: certs.ca.clone(),
        cert: certs.coordinator.cert.clone(),
        key: certs.coordinator.key.clone(),
    }
}

/// TLS trusting the test CA, presenting no certificate.
pub fn anonymous_tls(certs: &Path) -> ClientTls {
    ClientTls::load(&certs.join("ca.pem"), None).expect("test CA loads")
}

/// Makes `config` serve over TLS with the test certificates in `certs`, recognise the test
/// coordinator, know the test analyst, and use a record key secret fixed per trust, so that tests
/// see the same noise on every run.
pub fn configure_test_node(config: &mut NodeConfig, certs: &DevCerts) {
    let dir = certs.ca.parent().expect("a folder");
    let name = config.node.name.clone();
    config.tls = Some(NodeTls {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}-key.pem")),
        client_ca: certs.ca.clone(),
    });
    config.access.coordinator_subject = Some(certs.coordinator_subject.clone());
    config.node.data_as_at = Some(TEST_AS_AT.into());
    let users = dir.join("users.toml");
    if !users.exists() {
        users_file().save(&users).expect("users file written");
    }
    config.access.users = Some(users);
    config.access.record_key_secret = Some(tessera_protocol::credentials::token_digest(&format!(
        "secret of {name}"
    )));
}

/// Generated data for some trusts in a temporary folder, with development certificates for them.
pub struct TestData {
    pub dir: tempfile::TempDir,
    pub trusts: Vec<GeneratedTrust>,
    pub certs: DevCerts,
}

impl TestData {
    /// Generates `rows` episodes across `providers` with `seed`.
    pub fn generate(providers: &[&str], rows: u64, seed: u64) -> TestData {
        let dir = tempfile::tempdir().expect("temporary folder");
        let config = GenConfig {
            out: dir.path().to_path_buf(),
            providers: providers.iter().map(|p| p.to_string()).collect(),
            rows,
            seed,
        };
        let trusts = generate(&config, &Catalog::builtin()).expect("generation succeeds");
        let names = providers.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let certs = write_dev_certs(&dir.path().join("certs"), &names).expect("certificates");
        TestData { dir, trusts, certs }
    }

    /// The folder of trust `provider`.
    pub fn trust_dir(&self, provider: &str) -> PathBuf {
        self.dir.path().join(provider)
    }

    /// A node configuration for `provider` (port chosen at spawn), with `edit` applied.
    pub fn node_config(&self, provider: &str, edit: impl FnOnce(&mut NodeConfig)) -> NodeConfig {
        let trust = self
            .trusts
            .iter()
            .find(|t| t.provider == provider)
            .expect("provider generated");
        let tables = trust.tables.iter().map(|t| t.table.clone()).collect::<Vec<_>>();
        let mut config = NodeConfig::for_trust_dir(provider, &trust.dir, "127.0.0.1:0", &tables);
        configure_test_node(&mut config, &self.certs);
        edit(&mut config);
        config
    }

    /// The coordinator's `[tls]` for these trusts.
    pub fn coordinator_tls_section(&self) -> tessera_coordinator::TlsSection {
        tls_section(&self.certs)
    }
}

/// A node serving in-process, with a client connected to it as the federation's coordinator.
pub struct TestNode {
    pub running: RunningNode,
    /// Connected as the coordinator (mutual TLS).
    pub client: NodeClient,
    pub audit_log: PathBuf,
    /// The folder of the test certificates.
    pub certs: PathBuf,
}

impl TestNode {
    /// Starts a node for `config` on a free port.
    pub async fn start(config: &NodeConfig) -> TestNode {
        let node = TrustNode::start(config, &Catalog::builtin())
            .await
            .expect("node starts");
        let running = node.spawn("127.0.0.1:0".parse().unwrap()).await.expect("node binds");
        let certs = certs_dir(config);
        let client = NodeClient::connect(&running.url(), Some(&coordinator_tls(&certs)))
            .await
            .expect("client connects");
        TestNode {
            running,
            client,
            audit_log: config.audit_path(),
            certs,
        }
    }

    /// A TLS channel to the node presenting what `tls` holds (for generic Flight and gRPC clients).
    pub async fn channel(&self, tls: &ClientTls) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.running.url())
            .expect("a valid url")
            .tls_config(tls.config())
            .expect("valid TLS settings")
            .connect()
            .await
            .expect("the node accepts the connection")
    }

    /// A client with `tls` and `credentials`.
    pub async fn client_with(&self, tls: &ClientTls, credentials: Option<Credentials>) -> NodeClient {
        NodeClient::connect(&self.running.url(), Some(tls))
            .await
            .expect("client connects")
            .with_credentials(credentials)
    }

    /// A client signed in as the test analyst.
    pub async fn analyst(&self) -> NodeClient {
        let credentials = Credentials::Basic {
            user: ANALYST.into(),
            password: ANALYST_PASSWORD.into(),
        };
        self.client_with(&anonymous_tls(&self.certs), Some(credentials)).await
    }

    /// Sends `sql` as the coordinator, on behalf of `tester` in project `battery`.
    pub async fn ask(&self, sql: &str) -> Result<NodeAnswer, ClientError> {
        let request = FragmentRequest::with_context(sql, RequestContext::new("tester", "battery"));
        self.client.query(&request).await
    }
}
