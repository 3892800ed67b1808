//! Planning, checking, running and auditing one query.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::execute_stream;
use futures::StreamExt;
use tessera_policy::{PolicyChecker, Refusal};
use tessera_protocol::names::AS_AT_METADATA;
use tessera_protocol::FragmentRequest;
use tonic::Status;

use super::Core;
use crate::access::{Caller, Unrecognised};
use crate::audit::{AuditRecord, Decision};

/// Why a node gave no answer to a query (audited, and sent to the caller as a gRPC status).
#[derive(Debug, Clone, PartialEq)]
pub enum Unanswered {
    /// The trust's policy forbids it.
    Refused(Refusal),
    /// It is not a valid query for this node (syntax, unknown table or column…).
    Invalid(String),
    /// It ran longer than allowed.
    Timeout(String),
    /// The node failed while running it.
    Internal(String),
}

impl Unanswered {
    /// The text sent to the client and written to the audit log.
    pub fn message(&self) -> String {
        match self {
            Unanswered::Refused(r) => r.to_string(),
            Unanswered::Invalid(m) | Unanswered::Timeout(m) | Unanswered::Internal(m) => m.clone(),
        }
    }

    fn decision(&self) -> Decision {
        match self {
            Unanswered::Refused(_) => Decision::Refused,
            _ => Decision::Error,
        }
    }

    /// The gRPC status a client sees.
    pub fn status(&self) -> Status {
        match self {
            Unanswered::Refused(_) => Status::permission_denied(self.message()),
            Unanswered::Invalid(_) => Status::invalid_argument(self.message()),
            Unanswered::Timeout(_) => Status::deadline_exceeded(self.message()),
            // What failed while running can name a record's values (a conversion error quotes the
            // value it met): the caller hears only that it failed; the audit line has the detail.
            Unanswered::Internal(_) => Status::internal(RUN_FAILED),
        }
    }
}

/// A finished answer.
#[derive(Clone)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: u64,
}

impl Core {
    /// Fills in what the caller left out (a query id, and who is asking when no one said) and
    /// cuts identity fields to what an audit line keeps.
    pub(super) fn with_defaults(&self, mut request: FragmentRequest) -> FragmentRequest {
        request.context = std::mem::take(&mut request.context).bounded();
        let context = &mut request.context;
        if context.query_id.is_empty() {
            let n = self.next_query.fetch_add(1, Ordering::Relaxed);
            let millis = chrono::Utc::now().timestamp_millis();
            context.query_id = format!("{}-{millis}-{n}", self.name);
        }
        if context.requester.is_empty() {
            context.requester = "anonymous".to_string();
        }
        request
    }

    /// Plans `sql` against this node's catalog and checks it against the policy (`from_coordinator`:
    /// the request proved it comes from this trust's coordinator).
    pub async fn plan_checked(&self, sql: &str, from_coordinator: bool) -> Result<LogicalPlan, Unanswered> {
        if sql.len() > MAX_SQL_BYTES {
            return Err(Unanswered::Invalid(format!(
                "the query is {} bytes; this node reads at most {MAX_SQL_BYTES}",
                sql.len()
            )));
        }
        tessera_policy::session::check_nesting(sql).map_err(Unanswered::Invalid)?;
        let plan = self
            .ctx
            .state()
            .create_logical_plan(sql)
            .await
            .map_err(|e| self.planning_error(e))?;
        PolicyChecker::new(&self.policy, &self.tables)
            .for_coordinator(from_coordinator)
            .noised(self.private.is_some())
            .check(&plan)
            .map_err(Unanswered::Refused)?;
        check_in_lists(&plan)?;
        Ok(plan)
    }

    fn planning_error(&self, e: DataFusionError) -> Unanswered {
        let root = e.find_root();
        match root {
            DataFusionError::SQL(parser, _) => Unanswered::Invalid(format!("syntax error: {parser}")),
            DataFusionError::Plan(message) if message.starts_with("table '") && message.ends_with("' not found") => {
                let full = &message["table '".len()..message.len() - "' not found".len()];
                let name = full.rsplit('.').next().unwrap_or(full);
                let served = self.tables.keys().cloned().collect::<Vec<_>>().join(", ");
                Unanswered::Invalid(format!("unknown table {name}: this node serves {served}"))
            }
            other => Unanswered::Invalid(other.strip_backtrace()),
        }
    }

    /// The most groups this node answers for `sql`: `max_groups` less a secret amount of up to a
    /// tenth of it, fixed per question. An exact limit would be an oracle: padding a question to
    /// exactly `max_groups` cells, a refusal would tell whether one more condition adds a cell.
    /// With a limit the asker does not know, each refusal says next to nothing.
    pub fn group_limit(&self, sql: &str) -> u64 {
        use sha2::Digest;
        let max = self.policy.max_groups as u64;
        let mut hasher = sha2::Sha256::new();
        hasher.update(self.limit_key);
        hasher.update(sql.as_bytes());
        let digest = hasher.finalize();
        let draw = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        max - draw % (max / 10 + 1)
    }

    /// Runs a checked plan, refusing answers with more groups than [`Core::group_limit`].
    pub(super) async fn execute(&self, sql: &str, plan: LogicalPlan, timeout: Duration) -> Result<Answer, Unanswered> {
        self.run(plan, timeout, self.group_limit(sql)).await
    }

    /// Runs a checked plan, refusing answers with more than `max_groups` groups (`u64::MAX`:
    /// none, for exact answers that never leave the node).
    pub(super) async fn run(
        &self,
        plan: LogicalPlan,
        timeout: Duration,
        max_groups: u64,
    ) -> Result<Answer, Unanswered> {
        let run = async {
            let state = self.ctx.state();
            let physical = state.create_physical_plan(&plan).await?;
            // The physical plan's schema is what the batches carry (the logical plan's can name
            // a type before coercion, e.g. Int64 for a CASE of 0 and a float).
            let schema = physical.schema();
            let mut stream = execute_stream(physical, self.task_context(&state)?)?;
            let mut batches = Vec::new();
            let mut rows = 0u64;
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                if rows > max_groups {
                    return Ok(Err(Unanswered::Refused(Refusal::too_many_groups(
                        self.policy.max_groups,
                    ))));
                }
                batches.push(batch);
            }
            // Every answer says how recent the trust's data is.
            let schema = self.with_as_at(&schema);
            let batches = batches
                .into_iter()
                .map(|b| b.with_schema(schema.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            Ok::<_, DataFusionError>(Ok(Answer { schema, batches, rows }))
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Err(Unanswered::Timeout(format!(
                "the query ran longer than {} s and was stopped",
                timeout.as_secs_f64()
            ))),
            Ok(Err(e)) => Err(Unanswered::Internal(format!(
                "the query failed at the node: {}",
                e.strip_backtrace()
            ))),
            Ok(Ok(outcome)) => outcome,
        }
    }

    /// `schema` with this trust's as-at date in its metadata.
    pub(super) fn with_as_at(&self, schema: &SchemaRef) -> SchemaRef {
        with_metadata(schema, AS_AT_METADATA, self.as_at.clone())
    }

    /// A task context for one query: with a memory limit, a pool of its own, so that a query
    /// that exceeds it fails alone while others keep running.
    fn task_context(&self, state: &SessionState) -> Result<Arc<TaskContext>, DataFusionError> {
        let task = TaskContext::from(state);
        match self.memory_per_query {
            None => Ok(Arc::new(task)),
            Some(bytes) => {
                let runtime = RuntimeEnvBuilder::from_runtime_env(state.runtime_env())
                    .with_memory_limit(bytes, 1.0)
                    .build_arc()?;
                Ok(Arc::new(task.with_runtime(runtime)))
            }
        }
    }

    /// The answer's schema, for `GetFlightInfo` and prepared statements; refusals are audited.
    pub async fn describe(&self, request: &FragmentRequest, caller: &Caller, call: &str) -> Result<SchemaRef, Status> {
        match self.plan_checked(&request.sql, request.from_coordinator).await {
            Ok(plan) => Ok(self.with_as_at(plan.schema().inner())),
            Err(e) => Err(self.record_failure(request, caller, call, e).await),
        }
    }

    /// Plans, checks, runs and audits one request.
    pub async fn answer(&self, request: &FragmentRequest, caller: &Caller, call: &str) -> Result<Answer, Status> {
        let timeout = request
            .context
            .timeout_ms
            .map(Duration::from_millis)
            .map_or(self.timeout, |t| t.min(self.timeout));
        // If the caller goes away (Ctrl-C at the coordinator), this future is dropped mid-query:
        // the guard still leaves a line in the audit log.
        let mut guard = CancelGuard {
            record: Some(self.audit_record(request, caller, call, Decision::Error, Some(CANCELLED.to_string()), 0)),
            audit: self.audit.clone(),
        };
        let started = std::time::Instant::now();
        let outcome = match self.plan_checked(&request.sql, request.from_coordinator).await {
            Ok(plan) => match &self.private {
                Some(private) => self.execute_private(private, request, plan, timeout).await,
                None => self.execute(&request.sql, plan, timeout).await,
            },
            Err(e) => Err(e),
        };
        crate::operations::time(caller.role.audit_name(), started.elapsed());
        guard.record = None;
        match outcome {
            Ok(answer) => {
                self.record(self.audit_record(request, caller, call, Decision::Allowed, None, answer.rows))
                    .await?;
                Ok(answer)
            }
            Err(e) => Err(self.record_failure(request, caller, call, e).await),
        }
    }

    /// The coordinator's first phase for a private fragment: reserve its spend (`reserve`) or
    /// give an unanswered reservation back. A node without differential privacy keeps no budget
    /// and has nothing to do. Each is audited.
    pub async fn reserve(&self, request: &FragmentRequest, caller: &Caller, reserve: bool) -> Result<(), Status> {
        let call = if reserve { "DoAction reserve" } else { "DoAction cancel" };
        let outcome = match (&self.private, reserve) {
            (None, _) => Ok(()),
            (Some(private), true) => match self.plan_checked(&request.sql, request.from_coordinator).await {
                Ok(plan) => self.reserve_private(private, request, plan).await,
                Err(e) => Err(e),
            },
            (Some(private), false) => self.cancel_private(private, request),
        };
        match outcome {
            Ok(()) => {
                self.record(self.audit_record(request, caller, call, Decision::Allowed, None, 0))
                    .await
            }
            Err(e) => Err(self.record_failure(request, caller, call, e).await),
        }
    }

    /// The budget of the request's project at this trust (`None`: it keeps none), audited.
    pub async fn budget(
        &self,
        request: &FragmentRequest,
        caller: &Caller,
    ) -> Result<Option<tessera_protocol::BudgetNote>, Status> {
        let note = self.private.as_ref().map(|p| p.budget(&request.context.project));
        self.record(self.audit_record(request, caller, "DoAction budget", Decision::Allowed, None, 0))
            .await?;
        Ok(note)
    }

    /// Audits an unanswered request and gives the status the caller sees.
    pub async fn record_failure(
        &self,
        request: &FragmentRequest,
        caller: &Caller,
        call: &str,
        error: Unanswered,
    ) -> Status {
        let status = error.status();
        let record = self.audit_record(request, caller, call, error.decision(), Some(error.message()), 0);
        match self.record(record).await {
            Ok(()) => status,
            Err(audit_failure) => audit_failure,
        }
    }

    /// Audits a request from a caller the node did not recognise; the caller hears only that.
    /// `turned_away`: earlier requests from the same address refused without an audit line.
    pub async fn record_unrecognised(&self, call: &str, sql: &str, who: &Unrecognised, turned_away: u64) -> Status {
        let mut reason = format!("unauthenticated: {}", who.reason);
        if turned_away > 0 {
            reason.push_str(&format!(
                " (and {turned_away} earlier requests from this address refused while it was throttled, not audited one by one)"
            ));
        }
        let record = AuditRecord {
            context: self.with_defaults(FragmentRequest::new("")).context,
            role: "unauthenticated".into(),
            principal: who.presented.clone(),
            profile: self.policy.profile.audit_name(),
            call: call.to_string(),
            sql: sql.chars().take(MAX_AUDITED_SQL_CHARS).collect(),
            decision: Decision::Refused,
            reason: Some(reason),
            rows: 0,
        };
        match self.record(record).await {
            Ok(()) => Status::unauthenticated(who.reason.clone()),
            Err(audit_failure) => audit_failure,
        }
    }

    /// One audit line about `request` from `caller`.
    pub fn audit_record(
        &self,
        request: &FragmentRequest,
        caller: &Caller,
        call: &str,
        decision: Decision,
        reason: Option<String>,
        rows: u64,
    ) -> AuditRecord {
        AuditRecord {
            context: request.context.clone(),
            role: caller.role.audit_name().to_string(),
            principal: caller.name.clone(),
            profile: self.policy.profile.audit_name(),
            call: call.to_string(),
            sql: request.sql.clone(),
            decision,
            reason,
            rows,
        }
    }

    /// A line written to the audit log if the question holding it is dropped unaudited.
    pub fn unfinished(&self, record: AuditRecord) -> crate::audit::Unfinished {
        crate::audit::Unfinished::new(&self.audit, record)
    }

    /// Appends one line to the audit log (durably, off the async workers); if the log cannot be
    /// written, nothing is answered.
    pub async fn record(&self, record: AuditRecord) -> Result<(), Status> {
        crate::operations::count(&record);
        self.audit.record(record).await
    }
}

/// `schema` with `key` set to `value` in its metadata.
pub(super) fn with_metadata(schema: &SchemaRef, key: &str, value: String) -> SchemaRef {
    let mut metadata = schema.metadata().clone();
    metadata.insert(key.to_string(), value);
    Arc::new(schema.as_ref().clone().with_metadata(metadata))
}

/// Longest SQL a node plans, in bytes.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

/// Most values in one `IN (…)` list.
pub const MAX_IN_LIST: usize = 1000;

/// Refuses `IN` lists longer than [`MAX_IN_LIST`] (a list of a thousand codes is a filter; a list
/// of ten thousand is a way to make the planner and the audit log do work for nothing).
fn check_in_lists(plan: &LogicalPlan) -> Result<(), Unanswered> {
    let mut longest = 0;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::InList(list) = e {
                    longest = longest.max(list.list.len());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .map_err(|e| Unanswered::Internal(e.strip_backtrace()))?;
    if longest > MAX_IN_LIST {
        return Err(Unanswered::Refused(Refusal::new(format!(
            "an IN list has {longest} values; this node accepts at most {MAX_IN_LIST}"
        ))));
    }
    Ok(())
}

/// Most characters of an unauthenticated caller's SQL kept in the audit log.
pub const MAX_AUDITED_SQL_CHARS: usize = 4096;

/// What a caller hears when a query fails while it runs.
pub const RUN_FAILED: &str = "the query failed at the node while it ran (the trust's audit log has the details)";

/// The audit reason for a request whose caller went away before the answer was ready.
pub const CANCELLED: &str = "cancelled: the caller went away before the answer was ready";

/// Writes a "cancelled" audit line if dropped while still holding its record.
struct CancelGuard {
    record: Option<AuditRecord>,
    audit: crate::audit::AuditLog,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            let audit = self.audit.clone();
            let write = move || {
                if let Err(e) = audit.append(record) {
                    tracing::error!("audit log write failed: {e}");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn_blocking(write);
                }
                Err(_) => write(),
            }
        }
    }
}
