//! The line disclosure control draws in the central plan. Above a [`Released`] node there are
//! only released rows; the optimizer may not move anything from above it to below it, so no
//! expression of the researcher's — a filter, a cast that can fail — is ever evaluated on a
//! merged row that was not released (whether it failed would tell a small group from an empty one).

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::DFSchemaRef;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan, UserDefinedLogicalNodeCore};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

/// The released rows of one federated aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct Released {
    pub input: LogicalPlan,
}

impl Released {
    /// `input` (the protected rows) behind the line.
    pub fn wrap(input: LogicalPlan) -> LogicalPlan {
        LogicalPlan::Extension(Extension {
            node: Arc::new(Released { input }),
        })
    }
}

impl UserDefinedLogicalNodeCore for Released {
    fn name(&self) -> &str {
        "Released"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    // The default of `prevent_predicate_push_down_columns` (every column) keeps filters above.

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Released: only released rows above this line")
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, mut inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(Released {
            input: inputs.swap_remove(0),
        })
    }

    fn supports_limit_pushdown(&self) -> bool {
        false
    }
}

/// [`Released`] when the plan runs: its input unchanged, and the same line for the physical
/// optimizer (no filter is pushed through it).
#[derive(Debug)]
pub struct ReleasedExec {
    input: Arc<dyn ExecutionPlan>,
}

impl ReleasedExec {
    /// The line above `input`.
    pub fn new(input: Arc<dyn ExecutionPlan>) -> ReleasedExec {
        ReleasedExec { input }
    }
}

impl DisplayAs for ReleasedExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ReleasedExec")
    }
}

impl ExecutionPlan for ReleasedExec {
    fn name(&self) -> &str {
        "ReleasedExec"
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(self: Arc<Self>, mut children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(ReleasedExec::new(children.swap_remove(0))))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        self.input.execute(partition, context)
    }

    // The default `gather_filters_for_pushdown` pushes nothing through.
}
