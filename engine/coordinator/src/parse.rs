//! Step 1: SQL to a DataFusion logical plan, against the contracts' tables.
//!
//! `EXPLAIN` is unwrapped (the coordinator explains fragments itself); `EXPLAIN ANALYZE` is
//! refused, because its per-operator row counts are not protected.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::logical_expr::{Expr, LogicalPlan};

use crate::error::QueryError;

/// The logical plan of `sql`, without any `EXPLAIN` around it. Only queries: no DDL, no DML, no
/// `COPY … TO` (which would write files where the coordinator runs), no `SET` or other statements.
pub async fn parse(state: &SessionState, sql: &str) -> Result<LogicalPlan, QueryError> {
    let plan = state.create_logical_plan(sql).await?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| QueryError::query(format!("only queries are answered: {}", e.strip_backtrace())))?;
    refuse_amplifiers(&plan)?;
    match plan {
        LogicalPlan::Explain(explain) => Ok(Arc::unwrap_or_clone(explain.plan)),
        LogicalPlan::Analyze(_) => Err(QueryError::query(
            "EXPLAIN ANALYZE is not available: its per-operator row counts are not protected (they would show how \
             many groups each trust has); use EXPLAIN",
        )),
        other => Ok(other),
    }
}

/// Functions whose output can be far larger than their input (`repeat('x', 4000000000)` built
/// 16 GB at the centre, outside any memory pool): not available in a question.
const AMPLIFIERS: &[&str] = &["repeat", "lpad", "rpad", "replace", "overlay", "translate"];

fn refuse_amplifiers(plan: &LogicalPlan) -> Result<(), QueryError> {
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(f) = e {
                    if AMPLIFIERS.contains(&f.name()) {
                        found = Some(f.name().to_string());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    match found {
        Some(name) => Err(QueryError::query(format!(
            "{name}() is not available: its result can be far larger than its arguments"
        ))),
        None => Ok(()),
    }
}

/// Whether `sql` is an EXPLAIN statement.
pub fn is_explain(sql: &str) -> bool {
    sql.trim_start()
        .get(..7)
        .is_some_and(|w| w.eq_ignore_ascii_case("explain"))
}
