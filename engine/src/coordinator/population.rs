//! Which records of which table an aggregate's cells count, in terms a later query can re-ask:
//! the table, the filter and the grouping expressions over the table's own columns, as SQL.
//!
//! Only aggregates over one federated table (through filters, projections and aliases) have such
//! a population; aggregates over joins or unions are not compared with earlier releases.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::error::Result;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use datafusion::sql::unparser::Unparser;

use crate::expr_util::strip_alias;

/// An aggregate's records and cells, as SQL over `table`'s columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Population {
    pub table: String,
    /// The records counted (`None`: all).
    pub predicate: Option<String>,
    /// The grouping expressions.
    pub groups: Vec<String>,
}

/// The population of an aggregate over `input` grouped by `groups`, restricted further by
/// `filter` (an aggregate's own FILTER); `None` when the input is not one table.
pub fn population(input: &LogicalPlan, groups: &[Expr], filter: Option<&Expr>) -> Result<Option<Population>> {
    let mut exprs = groups.to_vec();
    let mut predicates = filter.into_iter().cloned().collect::<Vec<_>>();
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
                plan = &p.input;
            }
            LogicalPlan::SubqueryAlias(s) => plan = &s.input,
            LogicalPlan::TableScan(scan) => {
                predicates.extend(scan.filters.iter().cloned());
                break scan.table_name.table().to_string();
            }
            _ => return Ok(None),
        }
    };
    let sql = |e: Expr| -> Result<String> { Ok(Unparser::default().expr_to_sql(&unqualified(e)?)?.to_string()) };
    Ok(Some(Population {
        table,
        predicate: conjunction(predicates).map(sql).transpose()?,
        groups: exprs
            .into_iter()
            .map(|e| sql(strip_alias(&e).clone()))
            .collect::<Result<_>>()?,
    }))
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
