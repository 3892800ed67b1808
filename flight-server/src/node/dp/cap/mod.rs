//! Keeps at most a number of each person's records among the rows a question reads, without
//! sorting them: a logical node the private plan puts where the people table's rows are
//! ([`CapRecords`]), the planner that turns it into its operator, and the operator itself
//! ([`exec::CapRecordsExec`]), which counts each person's rows in a hash table as they stream by.
//!
//! Which of a person's records are kept depends on the order rows arrive in; the bound does not:
//! every kept row took one of the numbers 1..=records from its person's counter.

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

/// Keeps at most `records` rows of each value of `person` from its input, which it passes on
/// otherwise unchanged (same schema). Predicates above it are never pushed below it: the rows
/// counted are the ones the question reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CapRecords {
    input: Arc<LogicalPlan>,
    person: Expr,
    records: u64,
    schema: DFSchemaRef,
}

impl CapRecords {
    /// The plan `input` with at most `records` rows of each `person` (a column of `input`).
    pub fn plan(input: LogicalPlan, person: Expr, records: u64) -> LogicalPlan {
        let schema = input.schema().clone();
        LogicalPlan::Extension(Extension {
            node: Arc::new(CapRecords {
                input: Arc::new(input),
                person,
                records,
                schema,
            }),
        })
    }
}

// The schema follows from the input: compare what defines the node.
impl PartialOrd for CapRecords {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (&self.input, &self.person, self.records)
            .partial_cmp(&(&other.input, &other.person, other.records))
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

    fn expressions(&self) -> Vec<Expr> {
        vec![self.person.clone()]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CapRecordsPerPerson: {} ≤ {}", self.person, self.records)
    }

    fn with_exprs_and_inputs(&self, mut exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        let (Some(person), Some(input)) = (exprs.pop(), inputs.pop()) else {
            return datafusion::common::internal_err!("CapRecordsPerPerson has one expression and one input");
        };
        Ok(CapRecords {
            schema: input.schema().clone(),
            input: Arc::new(input),
            person,
            records: self.records,
        })
    }

    /// Its output columns are its input's: it needs those asked for, and the person (its
    /// expression, which the optimizer adds).
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
        let person = planner.create_physical_expr(&cap.person, logical.schema(), session, planning_ctx)?;
        Ok(Some(Arc::new(CapRecordsExec::new(
            physical.clone(),
            person,
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
