//! Step 4, the fan-out: a leaf of the central plan that asks every trust for one fragment.
//!
//! [`FederatedScan`] is the logical node the rewrite puts where an aggregate over federated
//! tables used to be; it holds the fragment SQL and the schema of the partial answer. Its
//! physical form, [`FederatedScanExec`], has one partition per trust: partition `i` sends the
//! fragment to trust `i` in a single `DoGet` and streams the partial batches straight into the
//! central merge.

use std::cmp::Ordering;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::DFSchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::{stream, StreamExt, TryStreamExt};

pub mod links;
mod notes;
mod reserve;
pub use reserve::reserve_everywhere;

use crate::config::OnNodeFailure;
use links::{NodeSet, TrustError};
use notes::Notes;
use tessera_protocol::PrivacyNote;
use tessera_protocol::{FragmentRequest, RequestContext};

/// What one trust did for one fragment.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeOutcome {
    /// Sent its partial answer in full.
    Answered {
        groups: u64,
        elapsed: Duration,
        /// The as-at date of the trust's data, as its node reported it.
        as_at: Option<String>,
        /// What the answer cost, when the trust answered with differential privacy.
        privacy: Option<PrivacyNote>,
        /// Per partial column, the noise the trust stated (differential privacy).
        noise: std::collections::BTreeMap<String, crate::noise::Noise>,
    },
    /// Did not answer; the reason reads as `<trust> <reason>`.
    Failed(String),
}

/// The logical leaf that stands for "ask every trust this fragment".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FederatedScan {
    /// Fragment SQL each trust receives.
    pub sql: String,
    /// Federated tables the fragment reads (for EXPLAIN).
    pub tables: Vec<String>,
    /// Who is asking, for which project, the query id and the deadline (for the trusts' audit logs).
    pub context: RequestContext,
    /// The partial answer's schema (`g0…`, `d0`, `p0…`).
    pub schema: DFSchemaRef,
}

impl FederatedScan {
    /// The fragment `plan` stands for, when it is a federated scan.
    pub fn of(plan: &LogicalPlan) -> Option<&FederatedScan> {
        match plan {
            LogicalPlan::Extension(extension) => extension.node.as_any().downcast_ref::<FederatedScan>(),
            _ => None,
        }
    }
}

impl PartialOrd for FederatedScan {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        // DFSchema has no order; the SQL identifies the fragment.
        self.sql.partial_cmp(&other.sql)
    }
}

impl UserDefinedLogicalNodeCore for FederatedScan {
    fn name(&self) -> &str {
        "FederatedScan"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "FederatedScan: tables=[{}], fragment={}",
            self.tables.join(", "),
            self.sql
        )
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// Executes a [`FederatedScan`]: one partition per trust.
pub struct FederatedScanExec {
    scan: FederatedScan,
    nodes: Arc<NodeSet>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// What happened at each trust, filled in as partitions finish.
    outcomes: Arc<Mutex<Vec<Option<NodeOutcome>>>>,
}

impl fmt::Debug for FederatedScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FederatedScanExec({})", self.scan.sql)
    }
}

impl FederatedScanExec {
    fn new(scan: FederatedScan, nodes: Arc<NodeSet>) -> FederatedScanExec {
        let schema = scan.schema.inner().clone();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(nodes.len()),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        let outcomes = Arc::new(Mutex::new(vec![None; nodes.len()]));
        FederatedScanExec {
            scan,
            nodes,
            schema,
            properties: Arc::new(properties),
            outcomes,
        }
    }

    /// The fragment SQL.
    pub fn sql(&self) -> &str {
        &self.scan.sql
    }

    /// The query id every trust's audit line records.
    pub fn query_id(&self) -> &str {
        &self.scan.context.query_id
    }

    /// Each trust's outcome, by name, once the scan has run.
    pub fn outcomes(&self) -> Vec<(String, Option<NodeOutcome>)> {
        let outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        self.nodes.names().zip(outcomes.iter().cloned()).collect()
    }
}

impl DisplayAs for FederatedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "FederatedScanExec: trusts={}, fragment={}",
            self.nodes.len(),
            self.scan.sql
        )
    }
}

/// Makes a node's batch match the expected partial schema (same columns, by position). A column
/// of another kind (text for a number, say) is refused, never cast to nulls: a mismatched batch
/// is never merged.
fn conform(batch: RecordBatch, schema: &SchemaRef, trust: &str) -> Result<RecordBatch> {
    let mismatch = |why: String| DataFusionError::External(Box::new(TrustError::failed(trust, why)));
    if batch.num_columns() != schema.fields().len() {
        return Err(mismatch(format!(
            "answered with {} columns, expected {}",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let strict = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| {
            if !same_kind(c.data_type(), f.data_type()) {
                return Err(mismatch(format!(
                    "answered column {} as {}, expected {}",
                    f.name(),
                    c.data_type(),
                    f.data_type()
                )));
            }
            // The cast error would quote the value: a trust's partial is not for anyone to read.
            cast_with_options(c, f.data_type(), &strict)
                .map_err(|_| mismatch(format!("answered column {} with values that do not convert", f.name())))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl ExecutionPlan for FederatedScanExec {
    fn name(&self) -> &'static str {
        "FederatedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, _children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let node = self.nodes.get(partition)?;
        let request = FragmentRequest::with_context(self.scan.sql.clone(), self.scan.context.clone());
        let schema = self.schema.clone();
        let outcomes = self.outcomes.clone();
        // The question's deadline (never longer than the federation's per-node deadline).
        let timeout = self.scan.context.timeout_ms.map_or(self.nodes.timeout(), |ms| {
            Duration::from_millis(ms).min(self.nodes.timeout())
        });
        let on_failure = self.nodes.on_failure();
        let (query_id, trust) = (self.scan.context.query_id.clone(), node.name.clone());
        let record = move |outcome: NodeOutcome| {
            match &outcome {
                NodeOutcome::Answered { groups, elapsed, .. } => {
                    tracing::info!(query_id = %query_id, trust = %trust, groups, elapsed_ms = elapsed.as_millis() as u64, "trust answered")
                }
                NodeOutcome::Failed(reason) => {
                    tracing::warn!(query_id = %query_id, trust = %trust, reason = %reason, "trust did not answer")
                }
            }
            outcomes.lock().unwrap_or_else(|p| p.into_inner())[partition] = Some(outcome);
        };
        let answer = async move {
            let started = Instant::now();
            let deadline = tokio::time::Instant::now() + timeout;
            let trust = node.name.clone();
            let opened = tokio::time::timeout_at(deadline, node.service.stream(&request)).await;
            let failure = match opened {
                Ok(Ok(flight)) => {
                    let state = (flight, 0u64, Notes::default(), record, false);
                    let batches = stream::unfold(state, move |(mut flight, rows, notes, record, done)| {
                        let (trust, schema) = (node.name.clone(), schema.clone());
                        async move {
                            if done {
                                return None;
                            }
                            match tokio::time::timeout_at(deadline, flight.next()).await {
                                Ok(Some(Ok(batch))) => {
                                    let rows = rows + batch.num_rows() as u64;
                                    let notes = notes.read(&batch, &schema);
                                    let batch = conform(batch, &schema, &trust);
                                    Some((batch, (flight, rows, notes, record, false)))
                                }
                                Ok(Some(Err(e))) => {
                                    let error = TrustError::from_client(&trust, e);
                                    record(NodeOutcome::Failed(error.to_string()));
                                    Some((
                                        Err(DataFusionError::External(Box::new(error))),
                                        (flight, rows, notes.clone(), record, true),
                                    ))
                                }
                                Ok(None) => {
                                    // A trust that answered no rows adds no noise to any value.
                                    let noise = match rows {
                                        0 => Default::default(),
                                        _ => notes.noise,
                                    };
                                    record(NodeOutcome::Answered {
                                        groups: rows,
                                        elapsed: started.elapsed(),
                                        as_at: notes.as_at,
                                        privacy: notes.privacy,
                                        noise,
                                    });
                                    None
                                }
                                Err(_) => {
                                    let error = TrustError::timed_out(&trust, timeout);
                                    record(NodeOutcome::Failed(error.to_string()));
                                    Some((
                                        Err(DataFusionError::External(Box::new(error))),
                                        (flight, rows, notes.clone(), record, true),
                                    ))
                                }
                            }
                        }
                    });
                    return Ok(batches.boxed());
                }
                Ok(Err(e)) => TrustError::from_client(&trust, e),
                Err(_) => TrustError::timed_out(&trust, timeout),
            };
            // A refusal is never papered over: the researcher must see it.
            record(NodeOutcome::Failed(failure.to_string()));
            if on_failure == OnNodeFailure::Partial && !failure.refused {
                Ok(stream::empty().boxed())
            } else {
                Err(DataFusionError::External(Box::new(failure)))
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream::once(answer).try_flatten(),
        )))
    }
}

/// Whether a node's column type may stand for the expected one without losing anything: the
/// same type, text for text, a wider integer, or a float for an integer or float; lists of such.
fn same_kind(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    // (signed, bytes)
    let integer = |t: &DataType| match t {
        Int8 => Some((true, 1)),
        Int16 => Some((true, 2)),
        Int32 => Some((true, 4)),
        Int64 => Some((true, 8)),
        UInt8 => Some((false, 1)),
        UInt16 => Some((false, 2)),
        UInt32 => Some((false, 4)),
        UInt64 => Some((false, 8)),
        _ => None,
    };
    let widens = match (integer(from), integer(to)) {
        (Some((signed_from, a)), Some((signed_to, b))) => {
            (signed_from == signed_to && a <= b) || (!signed_from && signed_to && a < b)
        }
        _ => false,
    };
    let element = |t: &DataType| match t {
        List(f) | LargeList(f) => Some(f.data_type().clone()),
        _ => None,
    };
    from == to
        || (text(from) && text(to))
        || widens
        || (*to == Float64 && (integer(from).is_some() || matches!(from, Float32 | Float64)))
        || matches!((element(from), element(to)), (Some(a), Some(b)) if same_kind(&a, &b))
}

/// Plans [`FederatedScan`] nodes as [`FederatedScanExec`].
struct FederatedExtensionPlanner {
    nodes: Arc<NodeSet>,
}

#[async_trait]
impl ExtensionPlanner for FederatedExtensionPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        _session: &dyn Session,
        _planning_ctx: &datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        // The line disclosure control draws is for the optimizer; it runs as its input.
        if node.as_any().is::<crate::protect::released::Released>() {
            return Ok(physical_inputs
                .first()
                .map(|input| Arc::new(crate::protect::released::ReleasedExec::new(input.clone())) as _));
        }
        Ok(node
            .as_any()
            .downcast_ref::<FederatedScan>()
            .map(|scan| Arc::new(FederatedScanExec::new(scan.clone(), self.nodes.clone())) as Arc<dyn ExecutionPlan>))
    }
}

/// DataFusion's planner plus federated scans.
#[derive(Debug)]
pub struct FederatedQueryPlanner {
    pub nodes: Arc<NodeSet>,
}

#[async_trait]
impl QueryPlanner for FederatedQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(FederatedExtensionPlanner {
            nodes: self.nodes.clone(),
        })]);
        planner.create_physical_plan(logical_plan, session).await
    }
}

/// Every federated scan in a physical plan, depth first.
pub fn federated_scans(plan: &Arc<dyn ExecutionPlan>) -> Vec<&FederatedScanExec> {
    let mut found = Vec::new();
    if let Some(scan) = plan.downcast_ref::<FederatedScanExec>() {
        found.push(scan);
    }
    for child in plan.children() {
        found.extend(federated_scans(child));
    }
    found
}
