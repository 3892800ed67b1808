//! The coordinator: plans ordinary SQL over federated tables, sends per-trust fragments to every
//! node in parallel, merges the partial aggregates exactly, and says which trusts answered.
//!
//! ```text
//! SQL ─▶ DataFusion logical plan ─▶ federated rewrite ─▶ optimise ─▶ physical plan
//!                                     (fragment + merge)              FederatedScanExec: one DoGet per trust,
//!                                                                     partial batches stream into the merge
//! ```

pub mod config;
pub mod decompose;
mod merge;
pub mod moments;
pub mod nodes;
pub mod provenance;
mod record_keys;
pub mod rewrite;
pub mod scan;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SessionState;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use tessera_schemas::{Catalog, Role};

pub use config::{FederationConfig, OnNodeFailure};
pub use merge::STATUS_METADATA;
pub use provenance::Provenance;

use crate::disclosure::{DisclosureConfig, Ledger, Release, ReleaseLog};

use std::path::PathBuf;

use decompose::Dominance;
use nodes::{NodeSet, TrustError};
use rewrite::{RequestInfo, Rewriter};
use scan::{federated_scans, FederatedQueryPlanner, FederatedScan};

/// Schema metadata key of a result's disclosure line (what disclosure control did).
pub const DISCLOSURE_METADATA: &str = "tessera.disclosure";

/// Schema metadata key of a result's provenance line (which trusts answered).
pub const PROVENANCE_METADATA: &str = "tessera.provenance";

/// A finished federated query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Which trusts answered.
    pub provenance: Provenance,
    /// What disclosure control did, e.g. `2 cells suppressed: 2 (threshold 10); counts rounded to 5`.
    pub disclosure: String,
    pub elapsed: Duration,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What kind of failure a query met (decides the CLI's exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query is not valid or not allowed (including a trust's refusal).
    Query,
    /// A trust could not be reached or failed.
    Connection,
}

/// A query failed; the message is for the researcher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<DataFusionError> for QueryError {
    fn from(error: DataFusionError) -> QueryError {
        let root = error.find_root();
        if let DataFusionError::External(inner) = root {
            if let Some(trust) = inner.downcast_ref::<TrustError>() {
                return QueryError {
                    kind: if trust.refused {
                        ErrorKind::Query
                    } else {
                        ErrorKind::Connection
                    },
                    message: trust.to_string(),
                };
            }
        }
        let message = match root {
            DataFusionError::SQL(parser, _) => format!("syntax error: {parser}"),
            DataFusionError::Plan(message) => message.clone(),
            other => other.strip_backtrace(),
        };
        QueryError {
            kind: ErrorKind::Query,
            message,
        }
    }
}

/// The coordinator for one federation.
pub struct Coordinator {
    ctx: SessionContext,
    nodes: Arc<NodeSet>,
    config: FederationConfig,
    federated: BTreeSet<String>,
    public: BTreeSet<String>,
    identifiers: BTreeSet<String>,
    person_tables: BTreeSet<String>,
    sensitive: BTreeSet<String>,
    contracts: std::collections::BTreeMap<String, tessera_schemas::Contract>,
    /// The project's release log, when disclosure control is on.
    release_log: Option<ReleaseLog>,
    next_query: AtomicU64,
}

impl Coordinator {
    /// A coordinator for the trusts in `config`, over the tables in `catalog`.
    pub fn new(config: FederationConfig, catalog: &Catalog) -> Result<Coordinator, QueryError> {
        let connection = |message: String| QueryError {
            kind: ErrorKind::Connection,
            message,
        };
        config.check().map_err(connection)?;
        let nodes = Arc::new(NodeSet::from_config(&config).map_err(|e| connection(e.to_string()))?);
        let state = SessionStateBuilder::new_with_default_features()
            .with_config(crate::session::session_config())
            .with_query_planner(Arc::new(FederatedQueryPlanner { nodes: nodes.clone() }))
            .build();
        let ctx = SessionContext::new_with_state(state);
        crate::catalog::register_federated(&ctx, catalog)?;
        let federated = catalog
            .contracts()
            .filter(|c| !c.public)
            .map(|c| c.name.clone())
            .collect();
        let public = catalog
            .contracts()
            .filter(|c| c.public)
            .map(|c| c.name.clone())
            .collect();
        let identifiers = catalog
            .contracts()
            .flat_map(|c| c.columns.iter())
            .filter(|c| c.role == Role::Identifier)
            .map(|c| c.name.clone())
            .collect();
        let person_tables = catalog
            .contracts()
            .filter(|c| c.identifiers().next().is_some())
            .map(|c| c.name.clone())
            .collect();
        let sensitive = catalog
            .contracts()
            .flat_map(|c| c.columns.iter())
            .filter(|c| c.sensitive)
            .map(|c| c.name.clone())
            .collect();
        let contracts = catalog.contracts().map(|c| (c.name.clone(), c.clone())).collect();
        let release_log = config.disclosure.is_on().then(|| {
            ReleaseLog::new(
                config
                    .disclosure
                    .release_log
                    .clone()
                    .unwrap_or_else(|| default_release_log(&config.federation.project)),
            )
        });
        Ok(Coordinator {
            ctx,
            nodes,
            release_log,
            config,
            federated,
            public,
            identifiers,
            person_tables,
            sensitive,
            contracts,
            next_query: AtomicU64::new(1),
        })
    }

    /// The DataFusion session (federated tables registered; scanning them directly fails).
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The trusts, in configuration order.
    pub fn trusts(&self) -> Vec<String> {
        self.nodes.names().collect()
    }

    fn request_info(&self) -> RequestInfo {
        let n = self.next_query.fetch_add(1, Ordering::Relaxed);
        let requester = match self.config.federation.requester.as_str() {
            "" => std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            r => r.to_string(),
        };
        RequestInfo {
            query_id: format!("tessera-{}-{n}", chrono_like_millis()),
            requester,
            project: self.config.federation.project.clone(),
        }
    }

    /// Plans `sql`: the central plan with a [`FederatedScan`] wherever trusts are asked, and
    /// disclosure control around every merged value (what it did goes to `ledger`).
    pub async fn plan(&self, sql: &str, ledger: Arc<Ledger>) -> Result<LogicalPlan, QueryError> {
        let state = self.ctx.state();
        let raw = state.create_logical_plan(sql).await?;
        let raw = match raw {
            LogicalPlan::Explain(explain) => Arc::unwrap_or_clone(explain.plan),
            LogicalPlan::Analyze(_) => {
                return Err(QueryError {
                    kind: ErrorKind::Query,
                    message: "EXPLAIN ANALYZE is not available: its per-operator row counts are not protected (they \
                              would show how many groups each trust has); use EXPLAIN"
                        .into(),
                })
            }
            other => other,
        };
        self.federate(&state, raw, ledger)
    }

    fn federate(
        &self,
        state: &SessionState,
        plan: LogicalPlan,
        ledger: Arc<Ledger>,
    ) -> Result<LogicalPlan, QueryError> {
        let disclosure = &self.config.disclosure;
        let protect = disclosure.is_on();
        // Trusts send contributions and cell keys only to a coordinator that proves its token.
        let needs_trust = protect && (disclosure.checks_dominance() || disclosure.perturbs());
        let rewriter = Rewriter {
            state,
            federated: &self.federated,
            public: &self.public,
            identifiers: &self.identifiers,
            person_tables: &self.person_tables,
            sensitive: &self.sensitive,
            contracts: &self.contracts,
            request: self.request_info(),
            disclosure: protect.then_some((disclosure, ledger)),
            dominance: match (needs_trust, &self.config.federation.coordinator_token) {
                (false, _) => Dominance::Off,
                (true, Some(_)) => Dominance::On,
                (true, None) => Dominance::NoCredentials,
            },
        };
        Ok(rewriter.federate(plan)?)
    }

    /// Whether `sql` is an EXPLAIN statement.
    pub fn is_explain(sql: &str) -> bool {
        sql.trim_start()
            .get(..7)
            .is_some_and(|w| w.eq_ignore_ascii_case("explain"))
    }

    /// The central plan and the exact fragment SQL each trust will receive.
    pub async fn explain(&self, sql: &str) -> Result<String, QueryError> {
        let plan = self.plan(sql, Arc::default()).await?;
        let optimized = self.ctx.state().optimize(&plan)?;
        let mut fragments = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::Extension(e) = node {
                if let Some(scan) = e.node.as_any().downcast_ref::<FederatedScan>() {
                    fragments.push(scan.sql.clone());
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut text = format!(
            "Central plan (runs at the coordinator):\n{}\n",
            optimized.display_indent()
        );
        let trusts = self.trusts().join(", ");
        for (i, fragment) in fragments.iter().enumerate() {
            text.push_str(&format!("\nFragment {} (sent to {trusts}):\n  {fragment}\n", i + 1));
        }
        if fragments.is_empty() {
            text.push_str("\nNo trust is asked: the query reads only public reference data.\n");
        }
        Ok(text)
    }

    /// Runs `sql` across every trust and merges the answers.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.prepare(sql).await?.run().await
    }

    /// Plans `sql` down to an executable plan, without asking any trust yet.
    pub async fn prepare(&self, sql: &str) -> Result<PreparedQuery, QueryError> {
        let started = Instant::now();
        let ledger = Arc::new(Ledger::default());
        let plan = self.plan(sql, ledger.clone()).await?;
        let physical = self.ctx.state().create_physical_plan(&plan).await?;
        let log = self
            .release_log
            .clone()
            .filter(|_| ledger.about_people.load(Ordering::Relaxed));
        if let Some(log) = &log {
            self.check_budget(log, &ledger)?;
        }
        Ok(PreparedQuery {
            physical,
            task: self.ctx.task_ctx(),
            started,
            ledger,
            disclosure: self.config.disclosure.clone(),
            log,
            sql: sql.to_string(),
        })
    }
}

impl Coordinator {
    /// Refuses a question about too many sets of records, or any question once the project has
    /// been given its budget of distinct values (values given before are free: same noise). The
    /// check comes before the question runs: refusing a result for the values it holds would tell
    /// how many cells it had.
    fn check_budget(&self, log: &ReleaseLog, ledger: &Ledger) -> Result<(), QueryError> {
        let refuse = |message: String| QueryError {
            kind: ErrorKind::Query,
            message,
        };
        let disclosure = &self.config.disclosure;
        let asked = ledger.sets.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if disclosure.max_sets_per_question > 0 && asked.len() as u64 > disclosure.max_sets_per_question {
            return Err(refuse(format!(
                "this question asks about {} different sets of records (each statistic's FILTER or class, in each \
                 table of the question); at most {} are allowed in one question ([disclosure] max_sets_per_question). \
                 Ask it as several questions, or group by a column instead of filtering on each value",
                asked.len(),
                disclosure.max_sets_per_question
            )));
        }
        let given = log
            .released_values()
            .map_err(|message| refuse(format!("{message} (results are released only once logged)")))?;
        let budget = disclosure.release_budget;
        if budget > 0 && given.len() as u64 >= budget {
            return Err(refuse(format!(
                "project {} has been given its budget of {budget} distinct values ([disclosure] release_budget); \
                 ask the federation's data-access team to review and extend it",
                self.config.federation.project
            )));
        }
        Ok(())
    }
}

/// Where the project's releases are logged unless `release_log` says otherwise:
/// `$XDG_DATA_HOME/tessera/releases/<project>.jsonl` (or under `~/.local/share`).
pub fn default_release_log(project: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share")))
        .unwrap_or_else(|| PathBuf::from("."));
    let name = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    let name = if name.is_empty() { "default".to_string() } else { name };
    base.join("tessera").join("releases").join(format!("{name}.jsonl"))
}

/// A planned query, ready to run; its trusts' progress can be watched while it runs.
pub struct PreparedQuery {
    physical: Arc<dyn ExecutionPlan>,
    task: Arc<datafusion::execution::TaskContext>,
    started: Instant,
    ledger: Arc<Ledger>,
    disclosure: DisclosureConfig,
    /// Where a result about people is logged before it is returned.
    log: Option<ReleaseLog>,
    sql: String,
}

impl PreparedQuery {
    /// A handle for watching each trust while the query runs.
    pub fn watch(&self) -> QueryWatch {
        QueryWatch {
            physical: self.physical.clone(),
        }
    }

    /// Asks every trust, merges, and reports who answered. Dropping the future cancels the fragments.
    pub async fn run(self) -> Result<QueryResult, QueryError> {
        let batches = collect(self.physical.clone(), self.task).await;
        let provenance = provenance_of(&self.physical);
        let batches = batches?;
        if let Some(log) = &self.log {
            record_release(log, &self.sql, &self.physical, &provenance, &self.ledger)?;
        }
        let disclosure = self.ledger.summary(&self.disclosure);
        // The result says what was done to it wherever it goes (Arrow and Parquet files, Flight).
        let mut metadata = self.physical.schema().metadata().clone();
        metadata.insert(DISCLOSURE_METADATA.to_string(), disclosure.clone());
        metadata.insert(PROVENANCE_METADATA.to_string(), provenance.summary());
        let schema = Arc::new(self.physical.schema().as_ref().clone().with_metadata(metadata));
        let batches = batches
            .into_iter()
            .map(|b| b.with_schema(schema.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataFusionError::from)?;
        Ok(QueryResult {
            schema,
            batches,
            provenance,
            disclosure,
            elapsed: self.started.elapsed(),
        })
    }
}

/// Each trust's state during a query: `None` while it is still working.
#[derive(Clone)]
pub struct QueryWatch {
    physical: Arc<dyn ExecutionPlan>,
}

impl QueryWatch {
    /// Per trust: `None` while any of its fragments is running, else how the last one ended.
    pub fn states(&self) -> Vec<(String, Option<provenance::NodeOutcome>)> {
        let mut states: Vec<(String, Option<provenance::NodeOutcome>)> = Vec::new();
        for scan in federated_scans(&self.physical) {
            for (trust, outcome) in scan.outcomes() {
                match states.iter_mut().find(|(t, _)| *t == trust) {
                    Some(slot) if slot.1.is_some() => slot.1 = outcome,
                    Some(_) => {}
                    None => states.push((trust, outcome)),
                }
            }
        }
        states
    }
}

/// The first trust that failed (not merely one left unasked because the query stopped early).
fn failure_of(provenance: &Provenance) -> Option<String> {
    provenance
        .trusts
        .values()
        .flatten()
        .find(|reason| !reason.ends_with("(the query stopped early)"))
        .cloned()
}

/// Which trusts answered each fragment of an executed plan.
fn provenance_of(plan: &Arc<dyn ExecutionPlan>) -> Provenance {
    let mut provenance = Provenance::default();
    for scan in federated_scans(plan) {
        provenance.record(scan.sql(), scan.outcomes());
    }
    provenance
}

fn chrono_like_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// Logs a released result about people; a result that cannot be logged is not returned, and
/// neither is a partial one (it could be subtracted from a complete answer to the same question).
fn record_release(
    log: &ReleaseLog,
    sql: &str,
    physical: &Arc<dyn ExecutionPlan>,
    provenance: &Provenance,
    ledger: &Ledger,
) -> Result<(), QueryError> {
    if let Some(failure) = failure_of(provenance) {
        return Err(QueryError {
            kind: ErrorKind::Connection,
            message: format!(
                "{failure}; with disclosure control on, a partial answer about people is not released (it could be \
                 subtracted from a complete one). Retry when every trust answers"
            ),
        });
    }
    let scans = federated_scans(physical);
    let release = Release {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        query_id: scans.first().map(|s| s.query_id().to_string()).unwrap_or_default(),
        sql: sql.to_string(),
        sets: ledger
            .sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect(),
        values: ledger
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|v| format!("{v:016x}"))
            .collect(),
    };
    log.append(&release).map_err(|message| QueryError {
        kind: ErrorKind::Query,
        message: format!("{message} (a result is returned only once its release is logged)"),
    })
}
