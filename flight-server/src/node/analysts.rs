//! A trust's own analysts: their questions go through the coordinator's pipeline — rewrite into
//! cells, decompose, merge, disclosure control — with this node as the only trust, answered in
//! the same process. So an analyst gets exactly the protection a researcher gets, from the same
//! library and rules, and never an exact partial.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use futures::{stream, StreamExt};
use tessera_coordinator::{FederationConfig, FragmentService, FragmentStream, QueryError, QueryResult, TrustLink};
use tessera_protocol::client::ClientError;
use tessera_protocol::FragmentRequest;
use tessera_schemas::Catalog;
use tonic::Status;

use super::{Core, StartError};
use crate::access::{Caller, Role};
use crate::audit::Decision;
use crate::config::NodeConfig;
use crate::handles::Handles;
use crate::running::{PerUser, Running};

/// The audit call name of the fragments an analyst's question runs.
pub const PROTECTED_FRAGMENT: &str = "protected fragment";

/// How long a result waits for the `DoGet` that fetches it.
const PARKED_FOR: Duration = Duration::from_secs(600);

/// Most results waiting at once; the oldest go first.
const MAX_PARKED: usize = 256;

/// Most results one analyst may leave waiting.
const MAX_PARKED_PER_USER: usize = 16;

/// The node's link to itself: fragments run as the coordinator's would, audited under the analyst.
struct InProcess {
    core: Arc<Core>,
}

#[async_trait]
impl FragmentService for InProcess {
    async fn stream(&self, request: &FragmentRequest) -> Result<FragmentStream, ClientError> {
        let mut request = self.core.with_defaults(request.clone());
        request.from_coordinator = true;
        let caller = Caller {
            role: Role::Analyst,
            name: request.context.requester.clone(),
        };
        let answer = self
            .core
            .answer(&request, &caller, PROTECTED_FRAGMENT)
            .await
            .map_err(ClientError::Status)?;
        Ok(stream::iter(answer.batches.into_iter().map(Ok)).boxed())
    }
}

/// Analysts' questions, and their answers waiting to be fetched.
pub struct Analysts {
    core: Arc<Core>,
    coordinator: tessera_coordinator::Coordinator,
    project: String,
    parked: Handles<QueryResult>,
    /// Questions running per analyst.
    running: PerUser,
}

/// Most questions one analyst may have running at once.
pub const MAX_RUNNING_PER_USER: usize = 2;

impl Analysts {
    /// The pipeline over `core` with the `[disclosure]` rules of `config`.
    pub fn new(core: Arc<Core>, config: &NodeConfig, catalog: &Catalog) -> Result<Analysts, StartError> {
        if config.disclosure.mode == tessera_disclosure::Mode::Off {
            return Err(StartError(format!(
                "{}: [disclosure] mode: a node never answers its analysts without disclosure control",
                config.source.display()
            )));
        }
        let project = format!("{}-analysts", config.node.name);
        let mut federation = FederationConfig::new("", &project, [(config.node.name.clone(), String::new())]);
        federation.disclosure = config.disclosure.clone();
        if config.privacy.mode == super::dp::PrivacyMode::Dp {
            // The node noises every answer itself; the pipeline merges and adds nothing.
            federation.disclosure.mode = tessera_disclosure::Mode::Dp;
        }
        federation.disclosure.release_log = Some(config.analyst_release_log());
        federation.federation.node_timeout_secs = config.node.query_timeout_secs;
        let link = TrustLink {
            name: config.node.name.clone(),
            service: Arc::new(InProcess { core: core.clone() }),
        };
        // The central plans of analysts' questions share one memory pool of the per-query size.
        let memory = (config.node.memory_limit_mb > 0).then(|| config.node.memory_limit_mb as usize * 1024 * 1024);
        let runtime = super::node_runtime(memory).map_err(|e| StartError(e.strip_backtrace()))?;
        let coordinator = tessera_coordinator::Coordinator::with_links(federation, catalog, vec![link], runtime)
            .map_err(|e| StartError(format!("{}: [disclosure] {}", config.source.display(), e.message)))?;
        Ok(Analysts {
            core,
            coordinator,
            project,
            parked: Handles::new("analyst:", PARKED_FOR, MAX_PARKED, MAX_PARKED_PER_USER),
            running: PerUser::new(MAX_RUNNING_PER_USER),
        })
    }

    /// The project every analyst's question is recorded under (`<TRUST>-analysts`).
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The request an analyst's question stands for: who asked is the signed-in user.
    pub fn request(&self, caller: &Caller, sql: String) -> FragmentRequest {
        let context = tessera_protocol::RequestContext::new(caller.name.clone(), self.project.clone());
        self.core.with_defaults(FragmentRequest::with_context(sql, context))
    }

    /// The protected answer's schema, without running the question.
    pub async fn describe(&self, caller: &Caller, sql: String, call: &str) -> Result<SchemaRef, Status> {
        let request = self.request(caller, sql);
        match self.coordinator.prepare_as(&request.context, &request.sql).await {
            Ok(prepared) => Ok(prepared.schema()),
            Err(e) => Err(self.refuse(&request, caller, call, e).await),
        }
    }

    /// Runs an analyst's question through disclosure control, and audits it. What fails while
    /// it runs is not shown as is (a conversion error can quote a value): the analyst hears
    /// that it failed, the audit line has the detail.
    pub async fn run(&self, caller: &Caller, sql: String, call: &str) -> Result<QueryResult, Status> {
        let request = self.request(caller, sql);
        let _running = self.start(caller, &request, call).await?;
        let prepared = match self.coordinator.prepare_as(&request.context, &request.sql).await {
            Ok(prepared) => prepared,
            Err(e) => return Err(self.refuse(&request, caller, call, e).await),
        };
        let stopped = self.core.audit_record(
            &request,
            caller,
            call,
            Decision::Error,
            Some(crate::audit::STOPPED.into()),
            0,
        );
        let mut unfinished = self.core.unfinished(stopped);
        let ran = match tokio::time::timeout(self.core.timeout, prepared.run()).await {
            Ok(ran) => ran,
            Err(_) => Err(QueryError::query(format!(
                "refused: the question ran longer than {} s and was stopped",
                self.core.timeout.as_secs()
            ))),
        };
        unfinished.finish();
        match ran {
            Ok(result) => {
                let note = format!("{}; {}", result.provenance.summary(), result.disclosure);
                let rows = result.num_rows() as u64;
                let record = self
                    .core
                    .audit_record(&request, caller, call, Decision::Allowed, Some(note), rows);
                self.core.record(record).await?;
                Ok(result)
            }
            Err(e) => {
                // The trust's own refusals and failures are already in words for the analyst.
                let own = e.message.starts_with(&format!("{} ", self.core.name));
                let status = self.refuse(&request, caller, call, e).await;
                match own || status.code() == tonic::Code::Unavailable {
                    true => Err(status),
                    false => Err(Status::internal(super::query::RUN_FAILED)),
                }
            }
        }
    }

    /// Admits a question: not too long, and not more than [`MAX_RUNNING_PER_USER`] at once.
    async fn start(&self, caller: &Caller, request: &FragmentRequest, call: &str) -> Result<Running<'_>, Status> {
        let mut running = None;
        let limit = super::query::MAX_SQL_BYTES;
        let refusal = if request.sql.len() > limit {
            Some(format!(
                "refused: the question is {} bytes; this node reads at most {limit}",
                request.sql.len()
            ))
        } else {
            running = self.running.start(&caller.name);
            running
                .is_none()
                .then(|| format!("refused: you have {MAX_RUNNING_PER_USER} questions running; wait for one to finish"))
        };
        match refusal {
            Some(message) => {
                let mut cut = request.clone();
                cut.sql = cut.sql.chars().take(super::query::MAX_AUDITED_SQL_CHARS).collect();
                Err(self.refuse(&cut, caller, call, QueryError::query(message)).await)
            }
            None => running.ok_or_else(|| Status::internal("the question was not admitted")),
        }
    }

    async fn refuse(&self, request: &FragmentRequest, caller: &Caller, call: &str, error: QueryError) -> Status {
        let (decision, status) = crate::responses::status_of(&error);
        let record = self
            .core
            .audit_record(request, caller, call, decision, Some(error.message), 0);
        match self.core.record(record).await {
            Ok(()) => status,
            Err(audit_failure) => audit_failure,
        }
    }

    /// Keeps `result` for `caller`'s `DoGet`; returns its handle.
    pub fn park(&self, caller: &Caller, result: QueryResult) -> String {
        self.parked.insert(&caller.name, result)
    }

    /// The result parked under `handle`, if it is `caller`'s (fetched once).
    pub fn take(&self, caller: &Caller, handle: &[u8]) -> Option<QueryResult> {
        self.parked.take(&caller.name, handle)
    }
}
