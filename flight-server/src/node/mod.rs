//! The trust node: plans every query against its own catalog, checks it against its own policy,
//! runs what is allowed, and audits everything.

mod analysts;
pub mod dp;
mod query;
mod service;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::sql::metadata::SqlInfoData;
use datafusion::prelude::SessionContext;
use tessera_disclosure::Top2;
use tessera_policy::NodePolicy;
use tessera_protocol::tls::read_pem;
use tessera_schemas::{Catalog, Contract};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::access::Access;
use crate::audit::AuditLog;
use crate::config::NodeConfig;
use crate::gate::Gate;
use analysts::Analysts;

pub use analysts::PROTECTED_FRAGMENT;
pub use query::{Unanswered, CANCELLED, MAX_AUDITED_SQL_CHARS, MAX_SQL_BYTES};

/// What answers queries: the trust's tables, policy and audit log.
pub struct Core {
    name: String,
    ctx: SessionContext,
    tables: BTreeMap<String, Contract>,
    policy: NodePolicy,
    audit: AuditLog,
    timeout: Duration,
    /// DataFusion's memory limit for one query, in bytes.
    memory_per_query: Option<usize>,
    /// The as-at date of the trust's data, reported with every answer.
    as_at: String,
    /// The secret that fixes each question's group limit (see [`Core::group_limit`]).
    limit_key: [u8; 32],
    next_query: AtomicU64,
    /// Differential privacy, when `[privacy] mode = "dp"`.
    private: Option<dp::Private>,
}

/// A node that is ready to answer: tables registered, policy resolved, audit log open, TLS and
/// access loaded.
pub struct TrustNode {
    core: Arc<Core>,
    access: Access,
    analysts: Analysts,
    tls: ServerTlsConfig,
    sql_info: SqlInfoData,
}

/// The node could not start; the message names the file and key or column at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl TrustNode {
    /// Prepares a node from its configuration and the federation's contracts.
    pub async fn start(config: &NodeConfig, catalog: &Catalog) -> Result<TrustNode, StartError> {
        tessera_protocol::tls::install_crypto_provider();
        let file = config.source.display();
        let tls = server_tls(config)?;
        let access = Access::new(
            config.access.coordinator_subject.clone(),
            config.users_path(),
            config.projects_path(),
        )
        .map_err(|e| StartError(format!("{file}: {e}")))?;
        let memory_per_query =
            (config.node.memory_limit_mb > 0).then(|| config.node.memory_limit_mb as usize * 1024 * 1024);
        let ctx = node_session().map_err(|e| StartError(e.strip_backtrace()))?;
        ctx.register_udaf(Top2::udaf().as_ref().clone());
        let secret = config
            .access
            .record_key_secret
            .as_deref()
            .and_then(tessera_disclosure::RecordKeySecret::from_hex);
        ctx.register_udaf(tessera_disclosure::CellKey::udaf(secret).as_ref().clone());
        let tables = crate::tables::register_all(&ctx, config, catalog)
            .await
            .map_err(|e| StartError(e.to_string()))?;
        let policy = resolve_policy(config, &ctx, &tables)?;
        let audit_path = config.audit_path();
        let audit = AuditLog::open(&audit_path).map_err(|e| {
            StartError(format!(
                "audit log: {e}\n(the node will not append to a damaged log; inspect it with `tessera audit verify {}`)",
                audit_path.display()
            ))
        })?;
        let core = Arc::new(Core {
            name: config.node.name.clone(),
            ctx,
            tables,
            policy,
            audit,
            timeout: Duration::from_secs(config.node.query_timeout_secs),
            memory_per_query,
            as_at: config.data_as_at(),
            limit_key: limit_key(config),
            next_query: AtomicU64::new(1),
            private: private(config, catalog)?,
        });
        let analysts = Analysts::new(core.clone(), config, catalog)?;
        Ok(TrustNode {
            core,
            access,
            analysts,
            tls,
            sql_info: crate::sql_info::build(&format!("Tessera trust node {}", config.node.name)),
        })
    }

    /// The trust's privacy ledger, when it answers with differential privacy.
    pub fn privacy_ledger(&self) -> Option<&tessera_privacy::BudgetLedger> {
        self.core.private.as_ref().map(|p| p.ledger())
    }

    /// The trust's ODS code.
    pub fn name(&self) -> &str {
        &self.core.name
    }

    /// The tables this node serves (including public reference tables).
    pub fn tables(&self) -> impl Iterator<Item = &Contract> {
        self.core.tables.values()
    }

    /// Serves Flight SQL over TLS on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        // Connections capped in all and per address, and closed when idle, below tonic's TLS
        // (which the node keeps, for the coordinator's client certificate).
        let builder = tonic::transport::Server::builder().tls_config(self.tls.clone())?;
        Gate::from(self).serve(builder, listener, None, shutdown).await
    }

    /// Starts serving on `addr` in the background (port 0 picks a free port).
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<RunningNode> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            if let Err(e) = self
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
            {
                tracing::error!("the node stopped: {e}");
            }
        });
        Ok(RunningNode {
            addr,
            stop: Some(stop),
            task,
        })
    }
}

/// The node's DataFusion session. It never spills to disk: intermediate results of patient
/// records are not written to temporary files; a query over its memory limit fails instead.
/// Its planner runs the private plans' cap on each person's records.
fn node_session() -> datafusion::error::Result<SessionContext> {
    Ok(dp::cap::with_cap_planner(SessionContext::new_with_config_rt(
        tessera_policy::session::session_config(),
        node_runtime(None)?,
    )))
}

/// A runtime that never spills to disk, with `memory_limit` bytes when given.
pub(crate) fn node_runtime(
    memory_limit: Option<usize>,
) -> datafusion::error::Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let mut runtime = RuntimeEnvBuilder::new()
        .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled));
    if let Some(bytes) = memory_limit {
        runtime = runtime.with_memory_limit(bytes, 1.0);
    }
    runtime.build_arc()
}

/// The secret behind each question's group limit: derived from the trust's record key secret
/// (stable across restarts), else random for this run.
fn limit_key(config: &NodeConfig) -> [u8; 32] {
    use sha2::Digest;
    let seed = config
        .access
        .record_key_secret
        .clone()
        .unwrap_or_else(crate::access::random_secret);
    sha2::Sha256::digest(format!("tessera group limit\0{seed}").as_bytes()).into()
}

/// The server's TLS: this node's certificate, and client certificates optional but, when sent,
/// required to chain to `client_ca` (the caller's role is decided after the handshake).
fn server_tls(config: &NodeConfig) -> Result<ServerTlsConfig, StartError> {
    let file = config.source.display();
    let tls = config
        .tls_files()
        .ok_or_else(|| StartError(format!("{file}: [tls] is missing")))?;
    let read =
        |path: &std::path::Path, what: &str| read_pem(path, what).map_err(|e| StartError(format!("{file}: [tls] {e}")));
    let cert = read(&tls.cert, "CERTIFICATE")?;
    let key = read(&tls.key, "PRIVATE KEY")?;
    let ca = read(&tls.client_ca, "CERTIFICATE")?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .client_ca_root(Certificate::from_pem(ca))
        .client_auth_optional(true))
}

/// A node serving in the background; stops when dropped or on [`RunningNode::stop`].
pub struct RunningNode {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningNode {
    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Stops serving and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Turns configured function names into DataFusion's canonical names and checks every table
/// and column the policy names exists.
fn resolve_policy(
    config: &NodeConfig,
    ctx: &SessionContext,
    tables: &BTreeMap<String, Contract>,
) -> Result<NodePolicy, StartError> {
    let file = config.source.display();
    let mut policy = config.policy.clone();
    let state = ctx.state();
    let registry = state.aggregate_functions();
    policy.aggregate_functions = config
        .policy
        .aggregate_functions
        .iter()
        .map(|name| {
            registry
                .get(&name.to_lowercase())
                .map(|f| f.name().to_string())
                .ok_or_else(|| {
                    StartError(format!(
                        "{file}: [policy] aggregate_functions: unknown aggregate function `{name}`"
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    for table in &policy.allowed_tables {
        if !tables.contains_key(table) {
            return Err(StartError(format!(
                "{file}: [policy] allowed_tables: `{table}` is not a table this node serves"
            )));
        }
    }
    for entry in &policy.denied_columns {
        let known = entry
            .split_once('.')
            .and_then(|(t, c)| tables.get(t).and_then(|contract| contract.column(c)))
            .is_some();
        if !known {
            return Err(StartError(format!(
                "{file}: [policy] denied_columns: `{entry}` is not a column of a served table (write it as table.column)"
            )));
        }
    }
    Ok(policy)
}

/// The node's differential privacy from `[privacy]` (none in `sdc` mode).
fn private(config: &NodeConfig, catalog: &Catalog) -> Result<Option<dp::Private>, StartError> {
    if config.privacy.mode != dp::PrivacyMode::Dp {
        return Ok(None);
    }
    let file = config.source.display();
    let settings = config
        .privacy
        .settings()
        .map_err(|e| StartError(format!("{file}: {e}")))?;
    let domains = catalog
        .domains()
        .map(|(name, domain)| (name.clone(), domain.codes().map(str::to_string).collect()))
        .collect();
    let witnesses = dp::Witnesses {
        domains,
        period: settings.period,
        trust: config.node.name.clone(),
    };
    let ledger = config.resolve(&config.privacy.ledger);
    dp::Private::open(settings, &ledger, witnesses)
        .map(Some)
        .map_err(|e| StartError(format!("{file}: [privacy] {e}")))
}
