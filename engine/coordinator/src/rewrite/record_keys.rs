//! The columns that make each record's key, carried up to an aggregate's input.
//!
//! A record's key is a MAC of its whole row ([`tessera_disclosure::cell_key`]), so the fragment
//! must hand every column of each table of people to `tessera_cell_key`, even when the query's
//! sub-queries keep only a few. This widens every projection between the scans and the aggregate
//! to pass those columns through (as `__tessera_k<n>`); nothing else about the query changes.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::common::{Column, TableReference};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, Projection, SubqueryAlias};

/// `plan` with the record columns of every table of people passed up, and those columns as
/// expressions over its output.
pub fn with_record_columns(plan: LogicalPlan, person_tables: &BTreeSet<String>) -> Result<(LogicalPlan, Vec<Expr>)> {
    let mut next = 0;
    widen(plan, person_tables, &mut next)
}

fn widen(plan: LogicalPlan, person_tables: &BTreeSet<String>, next: &mut usize) -> Result<(LogicalPlan, Vec<Expr>)> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let keys = match person_tables.contains(scan.table_name.table()) {
                true => scan.projected_schema.columns().into_iter().map(Expr::Column).collect(),
                false => Vec::new(),
            };
            Ok((LogicalPlan::TableScan(scan), keys))
        }
        LogicalPlan::Projection(p) => {
            let (input, keys) = widen(Arc::unwrap_or_clone(p.input), person_tables, next)?;
            let mut exprs = p.expr;
            let mut passed = Vec::new();
            for key in keys {
                let name = format!("__tessera_k{next}");
                *next += 1;
                exprs.push(key.alias(&name));
                passed.push(Expr::Column(Column::from_name(name)));
            }
            Ok((
                LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?),
                passed,
            ))
        }
        LogicalPlan::SubqueryAlias(s) => {
            let (input, keys) = widen(Arc::unwrap_or_clone(s.input), person_tables, next)?;
            let alias: TableReference = s.alias.clone();
            let keys = keys
                .into_iter()
                .map(|k| match k {
                    Expr::Column(c) => Expr::Column(Column::new(Some(alias.clone()), c.name)),
                    other => other,
                })
                .collect();
            Ok((
                LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(Arc::new(input), alias)?),
                keys,
            ))
        }
        plan @ (LogicalPlan::Filter(_) | LogicalPlan::Sort(_) | LogicalPlan::Repartition(_) | LogicalPlan::Join(_)) => {
            let mut keys = Vec::new();
            let mut inputs = Vec::new();
            for input in plan.inputs() {
                let (input, more) = widen(input.clone(), person_tables, next)?;
                inputs.push(input);
                keys.extend(more);
            }
            Ok((plan.with_new_exprs(plan.expressions(), inputs)?, keys))
        }
        other => Ok((other, Vec::new())),
    }
}
