//! A trust's own analysts: their questions go through the coordinator's pipeline — rewrite into
//! cells, decompose, merge, disclosure control — with this node as the only trust, answered in
//! the same process. So an analyst gets exactly the protection a researcher gets, from the same
//! library and rules, and never an exact partial.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use futures::{stream, StreamExt};
use tessera_coordinator::{
    ErrorKind, FederationConfig, FragmentService, FragmentStream, QueryError, QueryResult, TrustLink,
};
use tessera_protocol::client::ClientError;
use tessera_protocol::FragmentRequest;
use tessera_schemas::Catalog;
use tonic::Status;

use super::{Core, StartError};
use crate::access::{Caller, Role};
use crate::audit::Decision;
use crate::config::NodeConfig;

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
    parked: Mutex<HashMap<String, (String, Instant, QueryResult)>>,
    /// Questions running per analyst.
    running: Mutex<HashMap<String, usize>>,
}

/// Most questions one analyst may have running at once.
pub const MAX_RUNNING_PER_USER: usize = 2;

/// Counts one running question of a user while it lives.
struct Running<'a> {
    running: &'a Mutex<HashMap<String, usize>>,
    user: String,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.user);
            }
        }
    }
}

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
            parked: Mutex::default(),
            running: Mutex::default(),
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
        let ran = match tokio::time::timeout(self.core.timeout, prepared.run()).await {
            Ok(ran) => ran,
            Err(_) => Err(QueryError::query(format!(
                "refused: the question ran longer than {} s and was stopped",
                self.core.timeout.as_secs()
            ))),
        };
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
        let limit = super::query::MAX_SQL_BYTES;
        let refusal = if request.sql.len() > limit {
            Some(format!(
                "refused: the question is {} bytes; this node reads at most {limit}",
                request.sql.len()
            ))
        } else {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let n = running.entry(caller.name.clone()).or_insert(0);
            match *n >= MAX_RUNNING_PER_USER {
                true => Some(format!(
                    "refused: you have {MAX_RUNNING_PER_USER} questions running; wait for one to finish"
                )),
                false => {
                    *n += 1;
                    None
                }
            }
        };
        match refusal {
            Some(message) => {
                let mut cut = request.clone();
                cut.sql = cut.sql.chars().take(super::query::MAX_AUDITED_SQL_CHARS).collect();
                Err(self.refuse(&cut, caller, call, QueryError::query(message)).await)
            }
            None => Ok(Running {
                running: &self.running,
                user: caller.name.clone(),
            }),
        }
    }

    async fn refuse(&self, request: &FragmentRequest, caller: &Caller, call: &str, error: QueryError) -> Status {
        // Disclosure control's refusals read as reasons; syntax errors and unknown names do not.
        let invalid = error.message.starts_with("syntax error") || error.message.contains("not found");
        let (decision, status) = match (error.kind, invalid) {
            (ErrorKind::Query, false) => (Decision::Refused, Status::permission_denied(error.message.clone())),
            (ErrorKind::Query, true) => (Decision::Error, Status::invalid_argument(error.message.clone())),
            (ErrorKind::Connection, _) => (Decision::Error, Status::internal(error.message.clone())),
        };
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
        let handle = format!("analyst:{}", crate::access::random_secret());
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        parked.retain(|_, (_, at, _)| at.elapsed() < PARKED_FOR);
        let oldest_of = |parked: &HashMap<String, (String, Instant, QueryResult)>, user: Option<&str>| {
            parked
                .iter()
                .filter(|(_, (owner, _, _))| user.is_none_or(|u| owner == u))
                .min_by_key(|(_, (_, at, _))| *at)
                .map(|(k, _)| k.clone())
        };
        // One analyst's unfetched results never push out another's.
        if parked.values().filter(|(owner, _, _)| *owner == caller.name).count() >= MAX_PARKED_PER_USER {
            if let Some(oldest) = oldest_of(&parked, Some(&caller.name)) {
                parked.remove(&oldest);
            }
        }
        if parked.len() >= MAX_PARKED {
            if let Some(oldest) = oldest_of(&parked, None) {
                parked.remove(&oldest);
            }
        }
        parked.insert(handle.clone(), (caller.name.clone(), Instant::now(), result));
        handle
    }

    /// The result parked under `handle`, if it is `caller`'s (fetched once).
    pub fn take(&self, caller: &Caller, handle: &[u8]) -> Option<QueryResult> {
        let handle = std::str::from_utf8(handle).ok()?;
        let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
        match parked.get(handle) {
            Some((owner, at, _)) if *owner == caller.name && at.elapsed() < PARKED_FOR => {
                parked.remove(handle).map(|(_, _, result)| result)
            }
            _ => None,
        }
    }
}
