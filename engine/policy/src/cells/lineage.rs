//! What an aggregate's input is made of, in terms of contract columns: each output column's
//! definition over the base tables, and the conditions that select its records.
//!
//! Definitions are expressions whose columns are *base columns*, qualified by their table's
//! name (`apc_episodes.los_days`), whatever aliases, projections or sub-queries lie between.
//! So `GROUP BY s.x` over `(SELECT cost_gbp * 1 AS x …) s` is judged as `cost_gbp * 1`.

use std::collections::BTreeSet;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, JoinType, TableReference};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::fold::fold_constants;
use crate::refusal::Refusal;

/// The input of an aggregate over trust data, traced back to contract columns.
#[derive(Debug, Clone, Default)]
pub struct Lineage {
    /// Per output column, its definition over base columns.
    pub defs: Vec<Expr>,
    /// Conjuncts of the filters that select the records (WHERE, join conditions), over base columns.
    pub conditions: Vec<Expr>,
    /// Equalities that pair the records of two joined tables (`a.person_id = b.person_id`).
    pub join_pairs: Vec<(Expr, Expr)>,
    /// Tables read.
    pub tables: BTreeSet<String>,
    /// The table of each scan (a table joined with itself appears twice).
    pub scanned: Vec<String>,
}

/// A base column of `table`.
pub fn base_column(table: &str, name: &str) -> Expr {
    Expr::Column(Column::new(Some(TableReference::bare(table)), name))
}

/// Traces `plan`'s output columns and conditions back to base columns, refusing shapes that do
/// not keep one output row per record (unions, limits, nested aggregates, windows…).
pub fn lineage(plan: &LogicalPlan) -> Result<Lineage, Refusal> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let table = scan.table_name.table().to_string();
            if scan.fetch.is_some() {
                return Err(Refusal::new(format!(
                    "LIMIT over individual rows of {table} is not allowed (it selects particular records)"
                )));
            }
            let defs = scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| base_column(&table, f.name()))
                .collect::<Vec<_>>();
            let mut conditions = Vec::new();
            for filter in &scan.filters {
                let resolved = filter
                    .clone()
                    .transform_up(|e| match e {
                        Expr::Column(c) => Ok(Transformed::yes(base_column(&table, &c.name))),
                        other => Ok(Transformed::no(other)),
                    })
                    .map(|t| t.data)
                    .map_err(|e| Refusal::new(format!("cannot check the filter: {e}")))?;
                conditions.extend(conjuncts(&resolved));
            }
            Ok(Lineage {
                defs,
                conditions,
                join_pairs: Vec::new(),
                tables: BTreeSet::from([table.clone()]),
                scanned: vec![table],
            })
        }
        LogicalPlan::Projection(p) => {
            let input = lineage(&p.input)?;
            let defs = p
                .expr
                .iter()
                .map(|e| resolve(e, p.input.schema(), &input.defs))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Lineage { defs, ..input })
        }
        LogicalPlan::Filter(f) => {
            let mut input = lineage(&f.input)?;
            let predicate = resolve(&f.predicate, f.input.schema(), &input.defs)?;
            input.conditions.extend(conjuncts(&predicate));
            Ok(input)
        }
        LogicalPlan::SubqueryAlias(s) => lineage(&s.input),
        LogicalPlan::Repartition(r) => lineage(&r.input),
        LogicalPlan::Sort(s) if s.fetch.is_none() => lineage(&s.input),
        LogicalPlan::Join(j) => {
            if j.join_type != JoinType::Inner {
                return Err(Refusal::new(format!(
                    "{} joins of records are not supported under disclosure control: use an inner JOIN … ON",
                    j.join_type
                )));
            }
            let left = lineage(&j.left)?;
            let right = lineage(&j.right)?;
            let mut defs = left.defs.clone();
            defs.extend(right.defs.iter().cloned());
            let mut join_pairs = left.join_pairs;
            join_pairs.extend(right.join_pairs);
            for (l, r) in &j.on {
                join_pairs.push((
                    resolve(l, j.left.schema(), &left.defs)?,
                    resolve(r, j.right.schema(), &right.defs)?,
                ));
            }
            let mut conditions = left.conditions;
            conditions.extend(right.conditions);
            if let Some(filter) = &j.filter {
                let both = j
                    .left
                    .schema()
                    .join(j.right.schema())
                    .map_err(|e| Refusal::new(format!("cannot check the join: {e}")))?;
                conditions.extend(conjuncts(&resolve(filter, &both, &defs)?));
            }
            let mut tables = left.tables;
            tables.extend(right.tables);
            Ok(Lineage {
                defs,
                conditions,
                join_pairs,
                tables,
                scanned: [left.scanned, right.scanned].concat(),
            })
        }
        LogicalPlan::Union(_) => Err(Refusal::new(
            "an aggregate over a UNION of rows is not allowed under disclosure control: aggregate each table and \
             combine the aggregates (UNION ALL of aggregate queries)",
        )),
        LogicalPlan::Aggregate(_) | LogicalPlan::Distinct(_) => Err(Refusal::new(
            "an aggregate over the groups of another aggregate of trust data is not allowed here: its input would be \
             unprotected groups",
        )),
        LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => Err(Refusal::new(
            "rows of constants (VALUES) cannot be combined with trust data: they could multiply or single out records",
        )),
        other => Err(Refusal::new(format!(
            "{} is not allowed between trust data and its aggregate",
            other.display()
        ))),
    }
}

/// The conjuncts of `predicate`, aliases removed.
pub fn conjuncts(predicate: &Expr) -> Vec<Expr> {
    split_conjunction(predicate)
        .into_iter()
        .map(|e| crate::expr_util::strip_alias(e).clone())
        .collect()
}

/// `expr` over `schema`'s columns, rewritten over base columns by `defs` (one per column of
/// `schema`); constants folded.
pub fn resolve(expr: &Expr, schema: &DFSchema, defs: &[Expr]) -> Result<Expr, Refusal> {
    let mut failure = None;
    let resolved = expr
        .clone()
        .transform_up(|e| match e {
            Expr::Column(c) => match schema.maybe_index_of_column(&c).and_then(|i| defs.get(i)) {
                Some(def) => Ok(Transformed::yes(def.clone())),
                None => {
                    failure = Some(format!("column {} cannot be traced to a table", c.flat_name()));
                    Ok(Transformed::no(Expr::Column(c)))
                }
            },
            Expr::Alias(a) => Ok(Transformed::yes(*a.expr)),
            Expr::OuterReferenceColumn(..)
            | Expr::ScalarSubquery(_)
            | Expr::InSubquery(_)
            | Expr::Exists(_)
            | Expr::SetComparison(_) => {
                failure = Some(
                    "sub-queries inside expressions (IN (SELECT …), EXISTS, scalar sub-queries) are not allowed over \
                     trust data; use a JOIN"
                        .into(),
                );
                Ok(Transformed::no(e))
            }
            other => Ok(Transformed::no(other)),
        })
        .map_err(|e| Refusal::new(format!("cannot check the expression: {e}")))?
        .data;
    match failure {
        Some(reason) => Err(Refusal::new(reason)),
        None => Ok(fold_constants(resolved)),
    }
}
