//! Where a private plan bounds each person's records: at the highest node of the aggregate's
//! input that still carries the person, after the question's conditions and joins, and over
//! the answer's cells as that node's columns give them (the group keys, carried down through
//! the projections, filters and aliases between it and the aggregate, exactly).

use std::collections::BTreeMap;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, LogicalPlan};
use tessera_policy::cells::{base_column, lineage};
use tessera_policy::Refusal;
use tessera_schemas::Contract;

use super::cap::CapRecords;

/// Bounds each person's records among the rows the aggregate reads, after the question's
/// conditions and joins, to `records` in L2 norm over the aggregate's cells `groups` (see
/// [`super::cap`]): adding or removing one person then moves the answer by at most that,
/// whatever the question asks (a join cannot multiply a person's rows past the bound, and
/// people who have many records lose none that the question does not read). Where the cells
/// cannot be followed down to the person's rows, at most `records` records, which bounds it too.
pub fn bound_contributions(
    input: LogicalPlan,
    groups: &[Expr],
    contracts: &BTreeMap<String, Contract>,
    records: u64,
) -> Result<LogicalPlan, Refusal> {
    let people = lineage(&input)?
        .scanned
        .into_iter()
        .filter_map(|t| {
            let person = contracts.get(&t)?.identifiers().next()?.name.clone();
            Some((t, person))
        })
        .collect::<Vec<_>>();
    let [(table, person)] = people.as_slice() else {
        return Err(Refusal::new(
            "with differential privacy a question reads one table of people, once (a table of people joined with \
             another, or with itself, would let one person's records multiply); ask each table separately",
        ));
    };
    let cells = groups
        .iter()
        .all(|g| !g.is_volatile() && !has_subquery(g))
        .then(|| groups.to_vec());
    let person = base_column(table, person);
    bound_where_people_are(
        input,
        &Where {
            person: &person,
            table,
            records,
        },
        cells,
    )
}

/// What is bounded: the people table, its identifier, and the bound.
struct Where<'a> {
    person: &'a Expr,
    table: &'a str,
    records: u64,
}

/// Bounds the rows at the highest node of `node` that still carries each row's person: the
/// column whose definition is the people table's identifier itself (a renamed copy is found, a
/// lookalike is not). `cells` are the answer's cells over `node`'s columns, if known.
fn bound_where_people_are(node: LogicalPlan, at: &Where, cells: Option<Vec<Expr>>) -> Result<LogicalPlan, Refusal> {
    let fail = |e: datafusion::error::DataFusionError| Refusal::new(format!("cannot bound contributions: {e}"));
    let found = lineage(&node)?;
    if !found.scanned.iter().any(|t| t == at.table) {
        return Ok(node);
    }
    if let Some(i) = found.defs.iter().position(|d| d == at.person) {
        let column = Expr::Column(Column::from(node.schema().qualified_field(i)));
        return Ok(CapRecords::plan(node, column, cells.unwrap_or_default(), at.records));
    }
    if matches!(node, LogicalPlan::Join(_)) {
        return Err(Refusal::new(format!(
            "with differential privacy a join must keep {}'s person identifier in its rows (join the table \
             itself, not a sub-query that leaves the identifier out), so each person's records can be bounded",
            at.table
        )));
    }
    let below = cells.and_then(|cells| cells_below(&node, cells));
    let mut refused = None;
    let bounded = node
        .map_children(|child| match bound_where_people_are(child.clone(), at, below.clone()) {
            Ok(plan) => Ok(Transformed::yes(plan)),
            Err(refusal) => {
                refused = Some(refusal);
                Ok(Transformed::no(child))
            }
        })
        .map_err(fail)?;
    match refused {
        Some(refusal) => Err(refusal),
        None => Ok(bounded.data),
    }
}

/// `cells`, over `node`'s columns, as expressions of its one input's columns: a projection's
/// columns are its expressions, a filter's are its input's, an alias's are its input's renamed.
/// `None` for any other node, or a column that cannot be followed.
fn cells_below(node: &LogicalPlan, cells: Vec<Expr>) -> Option<Vec<Expr>> {
    let column_below = |c: &Column| -> Option<Expr> {
        match node {
            LogicalPlan::Projection(p) => {
                let i = p.schema.index_of_column(c).ok()?;
                Some(p.expr.get(i)?.clone().unalias())
            }
            LogicalPlan::Filter(f) => Some(Expr::Column(Column::from(
                f.input
                    .schema()
                    .qualified_field(f.input.schema().index_of_column(c).ok()?),
            ))),
            LogicalPlan::SubqueryAlias(s) => {
                let i = s.schema.index_of_column(c).ok()?;
                Some(Expr::Column(Column::from(s.input.schema().qualified_field(i))))
            }
            _ => None,
        }
    };
    cells
        .into_iter()
        .map(|cell| {
            let mut lost = false;
            let below = cell
                .transform(|e| match &e {
                    Expr::Column(c) => match column_below(c) {
                        Some(below) => Ok(Transformed::yes(below)),
                        None => {
                            lost = true;
                            Ok(Transformed::no(e))
                        }
                    },
                    _ => Ok(Transformed::no(e)),
                })
                .ok()?
                .data;
            (!lost).then_some(below)
        })
        .collect()
}

/// Whether `expr` holds a sub-query (its value is not a function of the row alone).
fn has_subquery(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) | Expr::OuterReferenceColumn(..)
        ))
    })
    .unwrap_or(true)
}
