//! `tessera serve`: the federation's coordinator as a Flight SQL service that researchers, BI
//! tools and the CLI sign in to. It holds what no user may hold or change — the trusts' list, the
//! coordinator's certificate, the disclosure policy and each project's release log and budget —
//! and answers every question through the coordinator's pipeline for the signed-in user, in one
//! of their projects. Every request, allowed or refused, is in the service's audit log; every
//! trust's audit log records the same user, project and query id.

mod budget;
mod flight;
pub mod parameters;
pub mod projects;
pub use questions::Asked;
mod questions;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::sql::metadata::SqlInfoData;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use tessera_coordinator::{FederationConfig, ServerSection};
use tessera_schemas::Catalog;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::access::Access;
use crate::audit::AuditLog;
use crate::gate::Gate;
use crate::handles::Handles;
use crate::node::StartError;
use crate::running::PerUser;
use projects::Projects;

/// How long an answer waits for its `DoGet`, and a prepared statement for its next use.
const KEPT_FOR: Duration = Duration::from_secs(600);

/// Most answers or prepared statements kept at once, and per user.
const MAX_KEPT: usize = 1024;
const MAX_KEPT_PER_USER: usize = 32;

/// How long a question waits for a free slot when the service is busy.
const WAIT_FOR_SLOT: Duration = Duration::from_secs(30);

/// How much longer than the trusts' deadline a question may run (merging, disclosure control).
const GRACE: Duration = Duration::from_secs(5);

/// An answer waiting for its `DoGet`: its schema carries the provenance and disclosure lines.
#[derive(Clone)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// A prepared statement: its project and spend, its SQL and the parameters bound so far.
#[derive(Clone)]
pub struct Statement {
    pub asked: Asked,
    pub sql: String,
    pub parameters: usize,
    pub bound: Option<Vec<ScalarValue>>,
}

/// The service, ready to answer.
pub struct Service {
    pub(crate) access: Access,
    pub(crate) audit: AuditLog,
    projects: Projects,
    catalog: Catalog,
    /// The dashboards the web app shows.
    pub(crate) dashboards: crate::web::Dashboards,
    /// The certificate and key users see, when the service has them.
    pub(crate) tls_files: Option<(std::path::PathBuf, std::path::PathBuf)>,
    answers: Handles<Answer>,
    statements: Handles<Statement>,
    running: PerUser,
    slots: Semaphore,
    /// The deadline of one question.
    timeout: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
    sql_info: SqlInfoData,
    next_query: std::sync::atomic::AtomicU64,
}

/// The `[server]` section of `config`, or why there is none.
pub fn server_section(config: &FederationConfig, source: &Path) -> Result<ServerSection, StartError> {
    config.server.clone().ok_or_else(|| {
        StartError(format!(
            "{}: [server] is missing: tessera serve needs at least `listen` and `users` (see README, \"Running the service\")",
            source.display()
        ))
    })
}

impl Service {
    /// Prepares the service of `config` (read from `source`) over the contracts of `catalog`.
    pub fn start(config: FederationConfig, source: &Path, catalog: Catalog) -> Result<Service, StartError> {
        tessera_protocol::tls::install_crypto_provider();
        let file = source.display();
        let server = server_section(&config, source)?;
        if config.tls.is_none() {
            return Err(StartError(format!(
                "{file}: [tls] is missing: the service asks the trusts as their coordinator, over mutual TLS"
            )));
        }
        if !config.disclosure.protects() {
            return Err(StartError(format!(
                "{file}: [disclosure] mode: the service never answers without disclosure control"
            )));
        }
        let tls = server
            .tls
            .as_ref()
            .map(|tls| crate::listener::tls_config(&tls.cert, &tls.key, &[b"h2"]))
            .transpose()
            .map_err(|e| StartError(format!("{file}: [server.tls] {e}")))?;
        let access = Access::new(None, Some(server.users.clone()), None)
            .map_err(|e| StartError(format!("{file}: [server] {e}")))?;
        let audit_path = server.state.join("audit.jsonl");
        let audit = AuditLog::open(&audit_path).map_err(|e| {
            StartError(format!(
                "the service's audit log: {e}\n(inspect it with `tessera audit verify {}`)",
                audit_path.display()
            ))
        })?;
        let memory = (server.memory_limit_mb > 0).then(|| server.memory_limit_mb as usize * 1024 * 1024);
        let runtime = crate::node::node_runtime(memory).map_err(|e| StartError(e.strip_backtrace()))?;
        // Past the trusts' deadline, so that a trust that does not answer is named as such.
        let timeout = Duration::from_secs(config.federation.node_timeout_secs) + GRACE;
        // Check the federation's files now rather than at the first question.
        config
            .tls
            .as_ref()
            .map(|t| t.load())
            .transpose()
            .map_err(|e| StartError(format!("{file}: {e}")))?;
        let dashboards = crate::web::Dashboards::load(server.dashboards.as_deref())
            .map_err(|e| StartError(format!("{file}: [server] dashboards: {e}")))?;
        let projects = Projects::new(config, catalog.clone(), runtime, server.state.join("releases"));
        Ok(Service {
            access,
            audit,
            projects,
            catalog,
            dashboards,
            tls_files: server.tls.map(|t| (t.cert, t.key)),
            answers: Handles::new("answer:", KEPT_FOR, MAX_KEPT, MAX_KEPT_PER_USER),
            statements: Handles::new("statement:", KEPT_FOR, MAX_KEPT, MAX_KEPT_PER_USER),
            running: PerUser::new(server.max_running_per_user),
            slots: Semaphore::new(server.max_running),
            timeout,
            tls,
            sql_info: crate::sql_info::build("Tessera"),
            next_query: std::sync::atomic::AtomicU64::new(1),
        })
    }

    /// The trusts the service asks.
    pub fn trusts(&self) -> Vec<String> {
        self.projects.trusts()
    }

    /// Serves Flight SQL on `listener` (over TLS when configured) until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        let tls = self.tls.clone();
        let builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .timeout(Duration::from_secs(3600));
        // TLS is done by the bounded listener (handshakes with a deadline, connections capped).
        Gate(self).serve(builder, listener, tls, shutdown).await
    }

    /// Starts serving Flight SQL on `addr`, and the dashboard on `http` when given, in the
    /// background (port 0 picks a free port).
    pub async fn spawn(self, addr: SocketAddr, http: Option<SocketAddr>) -> std::io::Result<RunningService> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let tls = self.tls.is_some();
        let service = Arc::new(self);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let web = match http {
            Some(http) => {
                let listener = TcpListener::bind(http).await?;
                let web_addr = listener.local_addr()?;
                let service = service.clone();
                let mut stopped = stopped.clone();
                tokio::spawn(async move {
                    let until = async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    };
                    if let Err(e) = crate::web::serve(service, listener, until).await {
                        tracing::error!("the dashboard stopped: {e}");
                    }
                });
                Some(web_addr)
            }
            None => None,
        };
        let mut stopped = stopped.clone();
        let task = tokio::spawn(async move {
            let until = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = service.serve(listener, until).await {
                tracing::error!("the service stopped: {e}");
            }
        });
        Ok(RunningService {
            addr,
            web,
            tls,
            stop,
            task: Some(task),
        })
    }
}

/// A service serving in the background; stops when dropped or on [`RunningService::stop`].
pub struct RunningService {
    pub addr: SocketAddr,
    /// The dashboard's address, when it serves one.
    pub web: Option<SocketAddr>,
    tls: bool,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningService {
    /// The URL Flight SQL clients connect to.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// The dashboard's URL.
    pub fn web_url(&self) -> Option<String> {
        self.web.map(|addr| format!("{}://{addr}", self.scheme()))
    }

    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// Stops serving and waits for the server to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
