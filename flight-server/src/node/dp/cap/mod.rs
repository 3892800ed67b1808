//! Bounds each person's records among the rows a question reads, without sorting them: a
//! logical node the private plan puts where the people table's rows are ([`CapRecords`]), the
//! planner that turns it into its operator, and the operator itself ([`CapRecordsExec`]), which
//! counts each person's rows in a hash table as they stream by.
//!
//! The bound is on the person's contribution to the answer's cells in L2 norm, which is what the
//! Gaussian noise is calibrated to: with `records = k`, the kept rows of one person, `c_i` of
//! them in cell `i`, satisfy `Σ c_i² ≤ k²`. Without the cells (`cells` empty) it is `Σ c_i ≤ k`,
//! at most k records, which bounds the L2 norm too and also the number of cells a person is in
//! (what a noisy threshold on cells needs). A person whose records are spread over many cells
//! (months, say) keeps more of them under the first: 1 record in each of k² cells.
//!
//! Which records are kept depends on the order rows arrive in; the bound does not: a row is
//! kept only if the person's total stays within it.

mod exec;

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{DFSchemaRef, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;

pub use exec::CapRecordsExec;

/// Bounds the rows of each value of `person` from its input to `records` (see the module),
/// which it passes on otherwise unchanged (same schema). Predicates above it are never pushed
/// below it: the rows counted are the ones the question reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapRecords {
    input: Arc<LogicalPlan>,
    person: Expr,
    /// The answer's group keys, over `input`'s columns: a row's cell (empty: count records).
    cells: Vec<Expr>,
    records: u64,
    schema: DFSchemaRef,
}

impl CapRecords {
    /// The plan `input` with each `person`'s rows (a column of `input`) bounded to `records`,
    /// over `cells` (expressions of `input` that give a row's cell; empty: records counted).
    pub fn plan(input: LogicalPlan, person: Expr, cells: Vec<Expr>, records: u64) -> LogicalPlan {
        let schema = input.schema().clone();
        LogicalPlan::Extension(Extension {
            node: Arc::new(CapRecords {
                input: Arc::new(input),
                person,
                cells,
                records,
                schema,
            }),
        })
    }
}

/// `plan` with every cap counting records, whatever the cells: at most `records` of a person,
/// so in at most `records` cells (what selecting cells by a noisy threshold needs).
pub fn count_records_only(plan: LogicalPlan) -> Result<LogicalPlan> {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    plan.transform_up(|node| {
        let LogicalPlan::Extension(Extension { node: ext }) = &node else {
            return Ok(Transformed::no(node));
        };
        match ext.as_any().downcast_ref::<CapRecords>() {
            Some(cap) if !cap.cells.is_empty() => Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                node: Arc::new(CapRecords {
                    cells: Vec::new(),
                    ..cap.clone()
                }),
            }))),
            _ => Ok(Transformed::no(node)),
        }
    })
    .map(|t| t.data)
}

// The schema follows from the input: compare what defines the node.
impl PartialOrd for CapRecords {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.input, &self.person, &self.cells, self.records)
            .partial_cmp(&(&other.input, &other.person, &other.cells, other.records))
            .filter(|o| *o != Ordering::Equal || self == other)
    }
}

impl UserDefinedLogicalNodeCore for CapRecords {
    fn name(&self) -> &str {
        "CapRecordsPerPerson"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    /// The person, then the cells.
    fn expressions(&self) -> Vec<Expr> {
        std::iter::once(self.person.clone())
            .chain(self.cells.iter().cloned())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.cells.as_slice() {
            [] => write!(f, "CapRecordsPerPerson: records of {} ≤ {}", self.person, self.records),
            cells => write!(
                f,
                "CapRecordsPerPerson: ‖records of {} over cells ({})‖₂ ≤ {}",
                self.person,
                cells.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(", "),
                self.records
            ),
        }
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        let mut exprs = exprs.into_iter();
        let (Some(person), Some(input), true) = (exprs.next(), inputs.pop(), inputs.is_empty()) else {
            return datafusion::common::internal_err!("CapRecordsPerPerson has a person and one input");
        };
        Ok(CapRecords {
            schema: input.schema().clone(),
            input: Arc::new(input),
            person,
            cells: exprs.collect(),
            records: self.records,
        })
    }

    /// Its output columns are its input's: it needs those asked for, and the person and cells
    /// (its expressions, which the optimizer adds).
    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![output_columns.to_vec()])
    }
}

/// Plans [`CapRecords`] as [`CapRecordsExec`].
#[derive(Debug, Default)]
struct CapPlanner;

#[async_trait]
impl ExtensionPlanner for CapPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(cap) = node.as_any().downcast_ref::<CapRecords>() else {
            return Ok(None);
        };
        let ([logical], [physical]) = (logical_inputs, physical_inputs) else {
            return datafusion::common::internal_err!("CapRecordsPerPerson has one input");
        };
        let physical_expr = |e: &Expr| planner.create_physical_expr(e, logical.schema(), session, planning_ctx);
        let person = physical_expr(&cap.person)?;
        let cells = cap.cells.iter().map(physical_expr).collect::<Result<Vec<_>>>()?;
        Ok(Some(Arc::new(CapRecordsExec::new(
            physical.clone(),
            person,
            cells,
            cap.records,
        ))))
    }
}

/// DataFusion's planner, which also plans [`CapRecords`].
#[derive(Debug, Default)]
struct NodeQueryPlanner;

#[async_trait]
impl QueryPlanner for NodeQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(CapPlanner)])
            .create_physical_plan(logical_plan, session)
            .await
    }
}

/// `ctx` with a planner that can run [`CapRecords`].
pub fn with_cap_planner(ctx: SessionContext) -> SessionContext {
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_query_planner(Arc::new(NodeQueryPlanner))
        .build();
    SessionContext::new_with_state(state)
}

#[cfg(test)]
mod tests;
