//! Trusts for a test: generated data in a temporary folder, and nodes serving it in-process.

use std::path::PathBuf;

use tessera_node::node::{RunningNode, TrustNode};
use tessera_node::NodeConfig;
use tessera_protocol::client::{ClientError, NodeAnswer, NodeClient};
use tessera_protocol::{FragmentRequest, RequestContext};
use tessera_schemas::gen::{generate, GenConfig, GeneratedTrust};
use tessera_schemas::Catalog;

/// The coordinator token test federations use; nodes are configured with its SHA-256.
pub const COORDINATOR_TOKEN: &str = "test-coordinator-token-0123456789abcdef-0123456789";

/// Makes `config` recognise the test coordinator (see [`COORDINATOR_TOKEN`]), with a record key
/// secret fixed per trust, so that tests see the same noise on every run.
pub fn trust_test_coordinator(config: &mut NodeConfig) {
    config.access.coordinator_token_sha256 = Some(tessera_protocol::token::token_digest(COORDINATOR_TOKEN));
    config.access.record_key_secret = Some(tessera_protocol::token::token_digest(&format!(
        "secret of {}",
        config.node.name
    )));
}

/// Generated data for some trusts in a temporary folder.
pub struct TestData {
    pub dir: tempfile::TempDir,
    pub trusts: Vec<GeneratedTrust>,
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
        TestData { dir, trusts }
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
        trust_test_coordinator(&mut config);
        edit(&mut config);
        config
    }
}

/// A node serving in-process, with a client connected to it.
pub struct TestNode {
    pub running: RunningNode,
    pub client: NodeClient,
    pub audit_log: PathBuf,
}

impl TestNode {
    /// Starts a node for `config` on a free port.
    pub async fn start(config: &NodeConfig) -> TestNode {
        let node = TrustNode::start(config, &Catalog::builtin())
            .await
            .expect("node starts");
        let running = node.spawn("127.0.0.1:0".parse().unwrap()).await.expect("node binds");
        let client = NodeClient::connect(&running.url()).await.expect("client connects");
        TestNode {
            running,
            client,
            audit_log: config.audit_path(),
        }
    }

    /// Sends `sql` as user `tester` in project `battery`.
    pub async fn ask(&self, sql: &str) -> Result<NodeAnswer, ClientError> {
        let request = FragmentRequest::with_context(sql, RequestContext::new("tester", "battery"));
        self.client.query(&request).await
    }
}
