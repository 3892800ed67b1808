//! Policy checks on expressions: how identifier, sensitive and withheld columns are used.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, Operator};

use super::lineage::Taint;
use super::{NodePolicy, Refusal, COUNTING_AGGREGATES, EXTREMUM_AGGREGATES};
use crate::expr_util::strip_alias;

/// Looks up the taint of a column referenced by an expression.
pub type Resolve<'r> = dyn Fn(&Column) -> Result<Taint, Refusal> + 'r;

pub fn compared(name: &str) -> Refusal {
    Refusal::new(format!(
        "column {name} is an identifier and cannot be compared with a value"
    ))
}

fn in_expression(name: &str) -> Refusal {
    Refusal::new(format!(
        "column {name} is an identifier and cannot be used in an expression"
    ))
}

fn denied(table: &str, name: &str) -> Refusal {
    Refusal::new(format!("column {table}.{name} is withheld by this trust's policy"))
}

pub fn subquery() -> Refusal {
    Refusal::new("sub-queries inside expressions (IN (SELECT …), EXISTS, scalar sub-queries) are not allowed; use a JOIN or a derived table")
}

pub fn window() -> Refusal {
    Refusal::new("window functions are not allowed: they compute a value for every row")
}

pub fn grouping_sets() -> Refusal {
    Refusal::new("GROUPING SETS, ROLLUP and CUBE are not allowed at a node; the coordinator computes totals from plain GROUP BY answers")
}

/// The column behind `expr` if it is a bare column, possibly renamed or cast.
pub(super) fn bare_column(expr: &Expr) -> Option<&Column> {
    match expr {
        Expr::Column(c) => Some(c),
        Expr::Alias(a) => bare_column(&a.expr),
        Expr::Cast(c) => bare_column(&c.expr),
        Expr::TryCast(c) => bare_column(&c.expr),
        _ => None,
    }
}

/// The identifier name behind `expr`, if it is a bare identifier column.
fn bare_identifier(expr: &Expr, resolve: &Resolve) -> Result<Option<String>, Refusal> {
    match bare_column(expr) {
        Some(c) => match resolve(c)? {
            Taint::Identifier { name } => Ok(Some(name)),
            Taint::Denied { table, name } => Err(denied(&table, &name)),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

fn is_comparison(op: &Operator) -> bool {
    use Operator::*;
    matches!(
        op,
        Eq | NotEq
            | Lt
            | LtEq
            | Gt
            | GtEq
            | IsDistinctFrom
            | IsNotDistinctFrom
            | LikeMatch
            | ILikeMatch
            | NotLikeMatch
            | NotILikeMatch
            | RegexMatch
            | RegexIMatch
            | RegexNotMatch
            | RegexNotIMatch
    )
}

/// Refuses any use of an identifier other than `IS [NOT] NULL` and `id = id` (a join key),
/// any reference to a withheld column, and constructs a node never runs (sub-queries, windows).
pub fn check_uses(expr: &Expr, resolve: &Resolve) -> Result<(), Refusal> {
    let mut outcome = Ok(());
    expr.apply(|e| {
        let verdict = check_node(e, resolve);
        match verdict {
            Ok(Some(recursion)) => Ok(recursion),
            Ok(None) => Ok(TreeNodeRecursion::Continue),
            Err(refusal) => {
                outcome = Err(refusal);
                Ok(TreeNodeRecursion::Stop)
            }
        }
    })
    .map_err(|e| Refusal::new(format!("cannot check expression: {e}")))?;
    outcome
}

/// Judges one expression node. `Ok(Some(Jump))` means the node is fine and its children need no look.
#[allow(deprecated)] // Expr::Wildcard is listed so the match stays exhaustive
fn check_node(e: &Expr, resolve: &Resolve) -> Result<Option<TreeNodeRecursion>, Refusal> {
    let skip = Ok(Some(TreeNodeRecursion::Jump));
    match e {
        Expr::BinaryExpr(b) if is_comparison(&b.op) => {
            let left = bare_identifier(&b.left, resolve)?;
            let right = bare_identifier(&b.right, resolve)?;
            match (left, right) {
                (Some(_), Some(_)) if matches!(b.op, Operator::Eq | Operator::IsNotDistinctFrom) => skip,
                (Some(name), _) | (_, Some(name)) => Err(compared(&name)),
                (None, None) => Ok(None),
            }
        }
        Expr::InList(list) => {
            for item in std::iter::once(list.expr.as_ref()).chain(list.list.iter()) {
                if let Some(name) = bare_identifier(item, resolve)? {
                    return Err(compared(&name));
                }
            }
            Ok(None)
        }
        Expr::Like(like) | Expr::SimilarTo(like) => {
            for side in [&like.expr, &like.pattern] {
                if let Some(name) = bare_identifier(side, resolve)? {
                    return Err(compared(&name));
                }
            }
            Ok(None)
        }
        Expr::Between(between) => {
            for side in [&between.expr, &between.low, &between.high] {
                if let Some(name) = bare_identifier(side, resolve)? {
                    return Err(compared(&name));
                }
            }
            Ok(None)
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) if bare_identifier(inner, resolve)?.is_some() => skip,
        Expr::Column(c) => match resolve(c)? {
            Taint::Identifier { name } => Err(in_expression(&name)),
            Taint::Denied { table, name } => Err(denied(&table, &name)),
            _ => Ok(None),
        },
        Expr::Exists(_)
        | Expr::InSubquery(_)
        | Expr::SetComparison(_)
        | Expr::ScalarSubquery(_)
        | Expr::OuterReferenceColumn(..) => Err(subquery()),
        Expr::WindowFunction(_) => Err(window()),
        Expr::GroupingSet(_) => Err(grouping_sets()),
        Expr::Unnest(_) => Err(Refusal::new("UNNEST is not allowed at a node")),
        Expr::Alias(_)
        | Expr::ScalarVariable(..)
        | Expr::Literal(..)
        | Expr::BinaryExpr(_)
        | Expr::Not(_)
        | Expr::IsNotNull(_)
        | Expr::IsNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Negative(_)
        | Expr::Case(_)
        | Expr::Cast(_)
        | Expr::TryCast(_)
        | Expr::ScalarFunction(_)
        | Expr::AggregateFunction(_)
        | Expr::Wildcard { .. }
        | Expr::Placeholder(_)
        | Expr::HigherOrderFunction(_)
        | Expr::Lambda(_)
        | Expr::LambdaVariable(_) => Ok(None),
    }
}

/// The first sensitive measure an expression reads, if any.
fn sensitive_source(expr: &Expr, resolve: &Resolve) -> Result<Option<String>, Refusal> {
    for column in expr.column_refs() {
        if let Taint::SensitiveRaw { name } | Taint::SensitiveDerived { name } = resolve(column)? {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// The taint of a value computed by `expr` (a projection item): bare columns pass their taint
/// through; anything computed is checked and is sensitive if it reads a sensitive measure.
pub fn value_taint(expr: &Expr, resolve: &Resolve) -> Result<Taint, Refusal> {
    if let Some(column) = strip_alias(expr).try_as_col() {
        return match resolve(column)? {
            Taint::Denied { table, name } => Err(denied(&table, &name)),
            taint => Ok(taint),
        };
    }
    check_uses(expr, resolve)?;
    Ok(match sensitive_source(expr, resolve)? {
        Some(name) => Taint::SensitiveDerived { name },
        None => Taint::Plain,
    })
}

/// A GROUP BY expression: never an identifier, never a raw sensitive measure.
pub fn check_group_expr(expr: &Expr, resolve: &Resolve) -> Result<Taint, Refusal> {
    if let Expr::GroupingSet(_) = expr {
        return Err(grouping_sets());
    }
    for column in expr.column_refs() {
        match resolve(column)? {
            Taint::Identifier { name } => {
                return Err(Refusal::new(format!(
                    "column {name} is an identifier and cannot appear in GROUP BY"
                )))
            }
            Taint::SensitiveRaw { name } if strip_alias(expr).try_as_col().is_some() => {
                return Err(Refusal::new(format!(
                    "column {name} is a sensitive measure and cannot appear in GROUP BY; aggregate it, or group by a banded expression such as floor({name} / 1000)"
                )))
            }
            _ => {}
        }
    }
    value_taint(expr, resolve)
}

/// An aggregate expression: allowed function; identifiers only counted; no min/max of sensitive measures.
/// `coordinator`: the request proved it comes from this trust's coordinator, which alone may ask
/// for the largest contributions (`tessera_top2`) the dominance rules need.
pub fn check_aggregate_expr(
    expr: &Expr,
    resolve: &Resolve,
    policy: &NodePolicy,
    coordinator: bool,
) -> Result<(), Refusal> {
    let mut aggregates = Vec::new();
    expr.apply(|e| {
        if let Expr::AggregateFunction(f) = e {
            aggregates.push(f.clone());
            return Ok(TreeNodeRecursion::Jump);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map_err(|e| Refusal::new(format!("cannot check expression: {e}")))?;
    if aggregates.is_empty() {
        check_uses(expr, resolve)?;
    }
    for f in aggregates {
        let name = f.func.name().to_string();
        let contributions = name == tessera_protocol::names::TOP2;
        let keys = name == tessera_protocol::names::CELL_KEY;
        if contributions && !coordinator {
            return Err(Refusal::new(format!(
                "{name}() returns individual values and is answered only to this trust's coordinator \
                 (the caller is not the coordinator this trust pins)"
            )));
        }
        if keys && !coordinator {
            return Err(Refusal::new(format!(
                "{name}() returns the keys of cells, with which perturbation could be undone, and is answered only \
                 to this trust's coordinator (the caller is not the coordinator this trust pins)"
            )));
        }
        if keys {
            // Its arguments are whole rows, identifiers included; the cell rules check they are.
            if let Some(filter) = &f.params.filter {
                check_uses(filter, resolve)?;
            }
            continue;
        }
        if !contributions && !policy.aggregate_functions.contains(&name) {
            let allowed = policy
                .aggregate_functions
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Refusal::new(format!(
                "aggregate function {name} is not allowed by this trust's policy (allowed: {allowed})"
            )));
        }
        for arg in &f.params.args {
            if let Some(identifier) = bare_identifier(arg, resolve)? {
                if COUNTING_AGGREGATES.contains(&name.as_str()) {
                    continue;
                }
                return Err(Refusal::new(format!(
                    "column {identifier} is an identifier and can only be counted (count(…) or count(DISTINCT …)), not passed to {name}()"
                )));
            }
            check_uses(arg, resolve)?;
            if EXTREMUM_AGGREGATES.contains(&name.as_str()) && !contributions {
                if let Some(measure) = sensitive_source(arg, resolve)? {
                    return Err(Refusal::new(format!(
                        "{name}() of {measure} would reveal one record's value ({measure} is a sensitive measure)"
                    )));
                }
            }
        }
        if let Some(filter) = &f.params.filter {
            check_uses(filter, resolve)?;
        }
        for sort in &f.params.order_by {
            check_uses(&sort.expr, resolve)?;
        }
    }
    Ok(())
}
