//! Small helpers over DataFusion expressions, shared by the policy checker and the coordinator.

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::Expr;

/// `expr` without any aliases around it.
pub fn strip_alias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => strip_alias(&a.expr),
        other => other,
    }
}

/// A call of the registered aggregate function `name` (no ORDER BY, no null treatment).
pub fn aggregate_call(
    state: &SessionState,
    name: &str,
    args: Vec<Expr>,
    distinct: bool,
    filter: Option<Box<Expr>>,
) -> Result<Expr> {
    let udaf = state
        .aggregate_functions()
        .get(name)
        .cloned()
        .ok_or_else(|| DataFusionError::Internal(format!("aggregate function {name} is not registered")))?;
    Ok(Expr::AggregateFunction(AggregateFunction::new_udf(
        udaf,
        args,
        distinct,
        filter,
        vec![],
        None,
    )))
}
