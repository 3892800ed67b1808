//! Step 1: SQL to a DataFusion logical plan, against the contracts' tables.
//!
//! `EXPLAIN` is unwrapped (the coordinator explains fragments itself); `EXPLAIN ANALYZE` is
//! refused, because its per-operator row counts are not protected.

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::context::{SQLOptions, SessionState};
use datafusion::logical_expr::{Expr, LogicalPlan, Operator};

use crate::error::QueryError;

/// The logical plan of `sql`, without any `EXPLAIN` around it. Only queries: no DDL, no DML, no
/// `COPY … TO` (which would write files where the coordinator runs), no `SET` or other statements.
pub async fn parse(state: &SessionState, sql: &str) -> Result<LogicalPlan, QueryError> {
    tessera_policy::session::check_nesting(sql).map_err(QueryError::query)?;
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

/// Most string concatenations (`||`, and each argument after the first of `concat`) in one
/// question: enough for any label, too few to double a string into gigabytes through a chain of
/// sub-queries (`s||s` over `s||s` over …), which a memory pool would not see.
pub const MAX_CONCATENATIONS: usize = 8;

/// Longest string literal in a question, in bytes.
pub const MAX_LITERAL_BYTES: usize = 1000;

fn refuse_amplifiers(plan: &LogicalPlan) -> Result<(), QueryError> {
    let mut found = None;
    let mut concatenations = 0usize;
    let mut longest = 0usize;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                match e {
                    Expr::ScalarFunction(f) if AMPLIFIERS.contains(&f.name()) => {
                        found = Some(f.name().to_string());
                        return Ok(TreeNodeRecursion::Stop);
                    }
                    Expr::ScalarFunction(f) if matches!(f.name(), "concat" | "concat_ws") => {
                        concatenations += f.args.len().saturating_sub(1);
                    }
                    Expr::BinaryExpr(b) if b.op == Operator::StringConcat => concatenations += 1,
                    Expr::Literal(value, _) => {
                        if let Some(Some(text)) = value.try_as_str() {
                            longest = longest.max(text.len());
                        }
                    }
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    if let Some(name) = found {
        return Err(QueryError::query(format!(
            "{name}() is not available: its result can be far larger than its arguments"
        )));
    }
    if concatenations > MAX_CONCATENATIONS {
        return Err(QueryError::query(format!(
            "the question joins strings {concatenations} times (|| or concat); at most {MAX_CONCATENATIONS} are \
             allowed, since repeated joining can build values far larger than the question"
        )));
    }
    if longest > MAX_LITERAL_BYTES {
        return Err(QueryError::query(format!(
            "a string in the question is {longest} bytes long; at most {MAX_LITERAL_BYTES} are allowed"
        )));
    }
    Ok(())
}

/// Whether `sql` is an EXPLAIN statement.
pub fn is_explain(sql: &str) -> bool {
    sql.trim_start()
        .get(..7)
        .is_some_and(|w| w.eq_ignore_ascii_case("explain"))
}
