//! Which records of which table an aggregate's cells count, in terms a later query can re-ask:
//! the table, the filter and the grouping expressions over the table's own columns, as SQL.
//!
//! Only aggregates over one federated table (through filters, projections and aliases) have such
//! a population. Aggregates over joins are not compared with earlier releases (a documented gap);
//! other inputs (a UNION of rows, constant tables) and volatile functions (`random()`, `now()`)
//! are refused, since they would make the comparison meaningless or skip it.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{plan_err, Column};
use datafusion::error::Result;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, Volatility};
use datafusion::sql::unparser::Unparser;

use crate::expr_util::strip_alias;

/// An aggregate's records and cells, as SQL over `table`'s columns: a family of populations
/// that differ only in which of those records a statistic is built from (its variants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Population {
    pub table: String,
    /// The records of the aggregate's input (the query's filters; `None`: all).
    pub predicate: Option<String>,
    /// The grouping expressions.
    pub groups: Vec<String>,
}

/// The population of an aggregate over `input` grouped by `groups`, and each of `conditions`
/// (which of its records a statistic is built from) as SQL over the table; `None` when the
/// input is a join, which is not tracked.
pub fn population(
    input: &LogicalPlan,
    groups: &[Expr],
    conditions: &[Option<Expr>],
) -> Result<Option<(Population, Vec<Option<String>>)>> {
    let mut exprs = groups.to_vec();
    let mut conditions = conditions.to_vec();
    let mut predicates = Vec::new();
    let mut plan = input;
    let table = loop {
        match plan {
            LogicalPlan::Filter(f) => {
                predicates.push(f.predicate.clone());
                plan = &f.input;
            }
            LogicalPlan::Projection(p) => {
                exprs = exprs.into_iter().map(|e| inline(e, p)).collect::<Result<_>>()?;
                predicates = predicates.into_iter().map(|e| inline(e, p)).collect::<Result<_>>()?;
                conditions = conditions
                    .into_iter()
                    .map(|c| c.map(|e| inline(e, p)).transpose())
                    .collect::<Result<_>>()?;
                plan = &p.input;
            }
            LogicalPlan::SubqueryAlias(s) => plan = &s.input,
            LogicalPlan::TableScan(scan) => {
                predicates.extend(scan.filters.iter().cloned());
                break scan.table_name.table().to_string();
            }
            LogicalPlan::Join(_) => return Ok(None),
            other => {
                return plan_err!(
                    "with disclosure control on, an aggregate over {} cannot be checked against the project's earlier \
                     releases; aggregate each table on its own (UNION ALL the aggregates if needed)",
                    describe(other)
                )
            }
        }
    };
    let everything = exprs.iter().chain(&predicates).chain(conditions.iter().flatten());
    if let Some(volatile) = everything.into_iter().find_map(volatile_function) {
        return plan_err!(
            "{volatile}() gives a different answer each time it runs, so a result using it cannot be checked against \
             the project's earlier releases; use a fixed value instead"
        );
    }
    let sql = |e: Expr| -> Result<String> { Ok(Unparser::default().expr_to_sql(&unqualified(e)?)?.to_string()) };
    let population = Population {
        table,
        predicate: conjunction(predicates).map(sql).transpose()?,
        groups: exprs
            .into_iter()
            .map(|e| sql(strip_alias(&e).clone()))
            .collect::<Result<_>>()?,
    };
    let conditions = conditions
        .into_iter()
        .map(|c| c.map(sql).transpose())
        .collect::<Result<_>>()?;
    Ok(Some((population, conditions)))
}

/// A short name for a plan node, for messages.
fn describe(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Union(_) => "a UNION of rows",
        LogicalPlan::Values(_) => "a VALUES list",
        LogicalPlan::EmptyRelation(_) => "no table",
        LogicalPlan::Distinct(_) => "DISTINCT rows",
        _ => "this input",
    }
}

/// The name of a function in `expr` that is not immutable, if any.
fn volatile_function(expr: &Expr) -> Option<String> {
    let mut found = None;
    let _ = expr.apply(|e| {
        if let Expr::ScalarFunction(f) = e {
            if f.func.signature().volatility != Volatility::Immutable {
                found = Some(f.func.name().to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// `expr` with references to `projection`'s outputs replaced by the expressions they name.
fn inline(expr: Expr, projection: &Projection) -> Result<Expr> {
    expr.transform_up(|e| match &e {
        Expr::Column(c) => {
            let found = projection
                .schema
                .fields()
                .iter()
                .position(|f| f.name() == &c.name)
                .map(|i| strip_alias(&projection.expr[i]).clone());
            Ok(match found {
                Some(inner) => Transformed::yes(inner),
                None => Transformed::no(e),
            })
        }
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}

/// `expr` with every column unqualified (the population reads one table).
fn unqualified(expr: Expr) -> Result<Expr> {
    expr.transform_up(|e| match &e {
        Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(&c.name)))),
        _ => Ok(Transformed::no(e)),
    })
    .map(|t| t.data)
}
