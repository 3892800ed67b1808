//! A federation for a test: several trusts' nodes, a coordinator over them, and the reference
//! session over the union of their files.

use datafusion::arrow::array::RecordBatch;
use tessera_schemas::Catalog;

use crate::nodes::{TestData, TestNode};

/// Several trusts' nodes, a coordinator over them, and a single DataFusion session over the union
/// of the same files (the reference every federated answer must equal).
pub struct Federation {
    pub data: TestData,
    pub nodes: Vec<TestNode>,
    pub coordinator: tessera_coordinator::Coordinator,
    pub reference: datafusion::prelude::SessionContext,
}

impl Federation {
    /// Generates `rows` episodes across `providers`, starts a node per trust and a coordinator.
    pub async fn start(providers: &[&str], rows: u64, seed: u64) -> Federation {
        Federation::start_with(providers, rows, seed, |_| {}).await
    }

    /// As [`Federation::start`], with `edit` applied to the federation config.
    pub async fn start_with(
        providers: &[&str],
        rows: u64,
        seed: u64,
        edit: impl FnOnce(&mut tessera_coordinator::FederationConfig),
    ) -> Federation {
        Federation::launch(providers, rows, seed, false, edit).await
    }

    /// Nodes under their default policy and a coordinator with the default disclosure control:
    /// what `tessera gen` sets up.
    pub async fn start_protected(providers: &[&str], rows: u64, seed: u64) -> Federation {
        Federation::launch(providers, rows, seed, true, |_| {}).await
    }

    /// Nodes answering with differential privacy (`[privacy] mode = "dp"`, `edit` applied to
    /// each), and a coordinator in `dp` mode over them.
    pub async fn start_private(
        providers: &[&str],
        rows: u64,
        seed: u64,
        edit: impl Fn(&str, &mut tessera_node::node::dp::PrivacyConfig),
    ) -> Federation {
        let data = TestData::generate(providers, rows, seed);
        let mut nodes = Vec::new();
        for p in providers {
            let config = data.node_config(p, |c| {
                c.privacy.mode = tessera_node::node::dp::PrivacyMode::Dp;
                edit(p, &mut c.privacy);
            });
            nodes.push(TestNode::start(&config).await);
        }
        let disclosure = tessera_disclosure::DisclosureConfig {
            mode: tessera_disclosure::Mode::Dp,
            ..Default::default()
        };
        Federation::assemble(data, nodes, disclosure, |_| {})
    }

    async fn launch(
        providers: &[&str],
        rows: u64,
        seed: u64,
        protected: bool,
        edit: impl FnOnce(&mut tessera_coordinator::FederationConfig),
    ) -> Federation {
        let data = TestData::generate(providers, rows, seed);
        let mut nodes = Vec::new();
        for p in providers {
            // The harness asks what the default policy refuses (day-level filters, min/max…).
            let config = data.node_config(p, |c| {
                c.policy.max_groups = 1_000_000;
                if !protected {
                    c.policy.profile = tessera_policy::Profile::ExactnessTest;
                }
            });
            nodes.push(TestNode::start(&config).await);
        }
        // Exactness is checked with disclosure control explicitly off.
        let disclosure = match protected {
            true => tessera_disclosure::DisclosureConfig::default(),
            false => tessera_disclosure::DisclosureConfig::off(),
        };
        Federation::assemble(data, nodes, disclosure, edit)
    }

    /// The coordinator over `nodes` and the reference session over the same files.
    fn assemble(
        data: TestData,
        nodes: Vec<TestNode>,
        disclosure: tessera_disclosure::DisclosureConfig,
        edit: impl FnOnce(&mut tessera_coordinator::FederationConfig),
    ) -> Federation {
        let coordinator = coordinator_over(&data, &nodes, disclosure, edit);
        let dirs = data.trusts.iter().map(|t| t.dir.clone()).collect::<Vec<_>>();
        let reference = crate::reference::union_session(&dirs, &Catalog::builtin()).expect("reference session");
        Federation {
            data,
            nodes,
            coordinator,
            reference,
        }
    }

    /// Another coordinator over the same nodes (its own release log), e.g. with other rules.
    pub fn coordinator_with(
        &self,
        disclosure: tessera_disclosure::DisclosureConfig,
    ) -> tessera_coordinator::Coordinator {
        coordinator_over(&self.data, &self.nodes, disclosure, |_| {})
    }

    /// The reference answer: single-node DataFusion over the union of every trust's files.
    pub async fn reference(&self, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
        self.reference.sql(sql).await?.collect().await
    }
}

/// A coordinator for the nodes of `data`, with the test certificate and a release log of its own.
fn coordinator_over(
    data: &TestData,
    nodes: &[TestNode],
    disclosure: tessera_disclosure::DisclosureConfig,
    edit: impl FnOnce(&mut tessera_coordinator::FederationConfig),
) -> tessera_coordinator::Coordinator {
    static LOGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut config = tessera_coordinator::FederationConfig::new(
        "harness",
        "exactness",
        data.trusts
            .iter()
            .zip(nodes)
            .map(|(t, n)| (t.provider.clone(), n.running.url())),
    );
    config.disclosure = disclosure;
    config.tls = Some(data.coordinator_tls_section());
    let n = LOGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    config.disclosure.release_log = Some(data.dir.path().join(format!("releases-{n}.jsonl")));
    edit(&mut config);
    tessera_coordinator::Coordinator::new(config, &Catalog::builtin()).expect("coordinator")
}
