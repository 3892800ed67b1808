//! One question of a signed-in user: their project, the limits, the coordinator's pipeline, and
//! an audit line whatever happens.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use tessera_coordinator::{Coordinator, ErrorKind, QueryError};
use tessera_protocol::names::{PRIVACY_SPEND_HEADER, PROJECT_HEADER};
use tessera_protocol::RequestContext;
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::{Answer, Service, WAIT_FOR_SLOT};
use crate::access::{Caller, Unrecognised};
use crate::audit::{AuditRecord, Decision};
use crate::node::{MAX_AUDITED_SQL_CHARS, MAX_SQL_BYTES};

/// What a user is told when their question failed in a way that is not theirs to read (a
/// message from deep in the plan could quote a value); the audit line has the detail.
pub const RUN_FAILED: &str = "the question failed while it ran; the service's audit log has the detail";

use crate::audit::STOPPED;

/// Largest answer the service keeps for a client, in bytes.
pub const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// The role of a service's users in its audit log.
const ROLE: &str = "user";

/// What a question is asked under: the user's project and the privacy spend they chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub project: String,
    /// Millionths of ρ at each trust (`None`: each trust's default).
    pub spend: Option<u64>,
}

impl Asked {
    /// In `project`, at each trust's default spend.
    pub fn project(project: &str) -> Asked {
        Asked {
            project: project.to_string(),
            spend: None,
        }
    }
}

/// The spend a researcher chose in `x-tessera-privacy-spend`, or why it is not one.
fn spend_of(metadata: &MetadataMap) -> Result<Option<u64>, String> {
    let Some(value) = metadata.get(PRIVACY_SPEND_HEADER) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("(not plain text)").trim();
    tessera_privacy::Rho::parse(text).map(|rho| Some(rho.0)).ok_or_else(|| {
        format!(
            "{PRIVACY_SPEND_HEADER}: a question's privacy spend is a ρ above 0 such as 0.05, not `{}`",
            text.chars().take(32).collect::<String>()
        )
    })
}

impl Service {
    /// The context of a question of `caller`: who, which project and spend, and a new query id
    /// that every trust's audit line carries too.
    pub(super) fn context(&self, caller: &Caller, asked: &Asked) -> RequestContext {
        let n = self.next_query.fetch_add(1, Ordering::Relaxed);
        let id = format!("serve-{}-{n}", chrono::Utc::now().timestamp_millis());
        let mut context = RequestContext::new(caller.name.clone(), asked.project.clone()).with_query_id(id);
        context.privacy_spend = asked.spend;
        context
    }

    /// What `caller` asks under: the project of the `x-tessera-project` header (else their
    /// first; it must be one of theirs, audited when it is not) and the spend of
    /// `x-tessera-privacy-spend`.
    pub(super) async fn asked_by(&self, caller: &Caller, metadata: &MetadataMap, call: &str) -> Result<Asked, Status> {
        let project = self.project_of(caller, metadata, call).await?;
        match spend_of(metadata) {
            Ok(spend) => Ok(Asked { project, spend }),
            Err(why) => Err(self.unanswered(caller, call, why).await),
        }
    }

    async fn project_of(&self, caller: &Caller, metadata: &MetadataMap, call: &str) -> Result<String, Status> {
        let theirs = self.access.projects_of(&caller.name);
        let asked = match metadata.get(PROJECT_HEADER).map(|v| v.to_str()) {
            Some(Err(_)) => Some("(not plain text)"),
            Some(Ok(text)) => Some(text.trim()),
            None => None,
        };
        let refusal = match (asked, theirs.first()) {
            (Some(asked), _) if !asked.is_empty() => match theirs.iter().any(|p| p == asked) {
                true => return Ok(asked.to_string()),
                false => format!(
                    "you may not ask for project `{}`; your projects: {}",
                    asked.chars().take(64).collect::<String>(),
                    if theirs.is_empty() {
                        "none".to_string()
                    } else {
                        theirs.join(", ")
                    }
                ),
            },
            (_, Some(first)) => return Ok(first.clone()),
            (_, None) => {
                "you have no projects yet; ask the service's operator to add one (tessera user add --projects)".into()
            }
        };
        let context = RequestContext::new(
            caller.name.clone(),
            asked.unwrap_or_default().chars().take(64).collect::<String>(),
        );
        let record = self.record(&context, caller, call, "", Decision::Refused, Some(refusal.clone()), 0);
        Err(match self.audit.record(record).await {
            Ok(()) => Status::permission_denied(refusal),
            Err(failure) => failure,
        })
    }

    /// An audit line about a question of `caller`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        context: &RequestContext,
        caller: &Caller,
        call: &str,
        sql: &str,
        decision: Decision,
        reason: Option<String>,
        rows: u64,
    ) -> AuditRecord {
        AuditRecord {
            context: context.clone(),
            role: ROLE.into(),
            principal: caller.name.clone(),
            profile: None,
            call: call.to_string(),
            sql: sql.chars().take(MAX_AUDITED_SQL_CHARS).collect(),
            decision,
            reason,
            rows,
        }
    }

    /// Refuses someone the service did not recognise, audited unless their address is flooding.
    pub(crate) async fn refuse_unrecognised(
        &self,
        call: &str,
        who: &Unrecognised,
        from: Option<std::net::SocketAddr>,
    ) -> Status {
        match self.access.audit_unrecognised(from) {
            Some(turned_away) => self.record_unrecognised(call, who, turned_away).await,
            None => Status::unauthenticated(who.reason.clone()),
        }
    }

    /// Audits a request from someone the service did not recognise; they hear only that.
    async fn record_unrecognised(&self, call: &str, who: &Unrecognised, turned_away: u64) -> Status {
        let mut reason = format!("unauthenticated: {}", who.reason);
        if turned_away > 0 {
            reason.push_str(&format!(
                " (and {turned_away} earlier requests from this address refused while it was throttled, not audited one by one)"
            ));
        }
        let record = AuditRecord {
            context: RequestContext::default(),
            role: "unauthenticated".into(),
            principal: who.presented.clone(),
            profile: None,
            call: call.to_string(),
            sql: String::new(),
            decision: Decision::Refused,
            reason: Some(reason),
            rows: 0,
        };
        match self.audit.record(record).await {
            Ok(()) => Status::unauthenticated(who.reason.clone()),
            Err(failure) => failure,
        }
    }

    /// Audits a question that got no answer; returns the status the user hears.
    async fn refuse(
        &self,
        context: &RequestContext,
        caller: &Caller,
        call: &str,
        sql: &str,
        error: QueryError,
    ) -> Status {
        let (decision, status) = crate::responses::status_of(&error);
        let record = self.record(context, caller, call, sql, decision, Some(error.message), 0);
        match self.audit.record(record).await {
            Ok(()) => status,
            Err(failure) => failure,
        }
    }

    /// Plans `sql` for `caller` as `asked` without asking any trust: its answer's columns.
    pub(super) async fn describe(
        &self,
        caller: &Caller,
        asked: &Asked,
        sql: &str,
        call: &str,
    ) -> Result<Arc<Schema>, Status> {
        let context = self.context(caller, asked);
        if let Some(too_long) = too_long(sql) {
            return Err(self.refuse(&context, caller, call, sql, too_long).await);
        }
        let coordinator = self.coordinator(&context, caller, call, sql).await?;
        if Coordinator::is_explain(sql) {
            return Ok(plan_schema());
        }
        match coordinator.prepare_as(&context, sql).await {
            Ok(prepared) => Ok(prepared.schema()),
            Err(e) => Err(self.refuse(&context, caller, call, sql, e).await),
        }
    }

    pub(super) async fn coordinator(
        &self,
        context: &RequestContext,
        caller: &Caller,
        call: &str,
        sql: &str,
    ) -> Result<Arc<Coordinator>, Status> {
        match self.projects.get(&context.project) {
            Ok(coordinator) => Ok(coordinator),
            Err(message) => Err(self
                .refuse(context, caller, call, sql, QueryError::query(message))
                .await),
        }
    }

    /// The refusal of a request beyond the caller's share of questions running at once.
    pub(super) fn too_many_running(&self) -> String {
        format!(
            "refused: you have {} questions running; wait for one to finish",
            self.running.max()
        )
    }

    /// Answers `sql` for `caller` as `asked` through disclosure control, within the limits, and
    /// audits it.
    pub(crate) async fn answer(&self, caller: &Caller, asked: &Asked, sql: &str, call: &str) -> Result<Answer, Status> {
        let context = self.context(caller, asked);
        if let Some(too_long) = too_long(sql) {
            return Err(self.refuse(&context, caller, call, sql, too_long).await);
        }
        let Some(_running) = self.running.start(&caller.name) else {
            let message = self.too_many_running();
            return Err(self
                .refuse(&context, caller, call, sql, QueryError::query(message))
                .await);
        };
        let Ok(Ok(_slot)) = tokio::time::timeout(WAIT_FOR_SLOT, self.slots.acquire()).await else {
            let message = "the service is busy with other questions; try again shortly";
            let record = self.record(&context, caller, call, sql, Decision::Error, Some(message.into()), 0);
            self.audit.record(record).await?;
            return Err(Status::unavailable(message));
        };
        let coordinator = self.coordinator(&context, caller, call, sql).await?;
        // From here on the question may be dropped half-way (the client goes away) or fail
        // unexpectedly: it is audited either way.
        let mut unfinished = crate::audit::Unfinished::new(
            &self.audit,
            self.record(&context, caller, call, sql, Decision::Error, Some(STOPPED.into()), 0),
        );
        if Coordinator::is_explain(sql) {
            unfinished.finish();
            return match coordinator.explain(sql).await {
                Ok(text) => {
                    let record = self.record(
                        &context,
                        caller,
                        call,
                        sql,
                        Decision::Allowed,
                        Some("plan shown".into()),
                        1,
                    );
                    self.audit.record(record).await?;
                    plan_answer(text)
                }
                Err(e) => Err(self.refuse(&context, caller, call, sql, e).await),
            };
        }
        let prepared = match coordinator.prepare_as(&context, sql).await {
            Ok(prepared) => prepared,
            Err(e) => {
                unfinished.finish();
                return Err(self.refuse(&context, caller, call, sql, e).await);
            }
        };
        let ran = match tokio::time::timeout(self.timeout, prepared.run()).await {
            Ok(ran) => ran,
            Err(_) => Err(QueryError::connection(format!(
                "the question ran longer than {} s and was stopped",
                self.timeout.as_secs()
            ))),
        };
        unfinished.finish();
        match ran {
            Ok(result) => {
                if let Some(refusal) = too_large(&result.batches) {
                    return Err(self.refuse(&context, caller, call, sql, refusal).await);
                }
                let note = format!("{}; {}", result.provenance.summary(), result.disclosure);
                let rows = result.num_rows() as u64;
                let record = self.record(&context, caller, call, sql, Decision::Allowed, Some(note), rows);
                self.audit.record(record).await?;
                Ok(Answer {
                    schema: result.schema,
                    batches: result.batches,
                })
            }
            Err(e) => {
                // A trust's refusal or failure names the trust, and disclosure control's own
                // refusals are reasons; anything else from deep in the plan is not shown as is.
                let named = self.trusts().iter().any(|t| e.message.starts_with(&format!("{t} ")));
                let shown = named || e.kind == ErrorKind::Connection;
                let status = self.refuse(&context, caller, call, sql, e).await;
                match shown || status.code() == tonic::Code::Unavailable {
                    true => Err(status),
                    false => Err(Status::internal(RUN_FAILED)),
                }
            }
        }
    }
}

/// The refusal of SQL longer than the service reads.
fn too_long(sql: &str) -> Option<QueryError> {
    (sql.len() > MAX_SQL_BYTES).then(|| {
        QueryError::query(format!(
            "refused: the question is {} bytes; the service reads at most {MAX_SQL_BYTES}",
            sql.len()
        ))
    })
}

/// The refusal of an answer larger than the service keeps for a client.
fn too_large(batches: &[RecordBatch]) -> Option<QueryError> {
    let bytes: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
    (bytes > MAX_ANSWER_BYTES).then(|| {
        QueryError::query(format!(
            "refused: the answer would be {} MiB; the service returns at most {} MiB (ask for fewer rows or \
             shorter values)",
            bytes / (1024 * 1024),
            MAX_ANSWER_BYTES / (1024 * 1024)
        ))
    })
}

/// The one-column answer of an `EXPLAIN`.
fn plan_schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("plan", DataType::Utf8, false)]))
}

fn plan_answer(text: String) -> Result<Answer, Status> {
    let schema = plan_schema();
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![text]))])
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(Answer {
        schema,
        batches: vec![batch],
    })
}
