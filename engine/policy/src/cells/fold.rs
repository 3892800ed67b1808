//! Constant folding, so that `DATE '2024-04-01'` (a cast of a string) or `240 + 0` are judged as
//! the literal values they are.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::Expr;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use crate::expr_util::strip_alias;

/// `expr` with every constant, non-volatile sub-expression replaced by its value.
pub fn fold_constants(expr: Expr) -> Expr {
    let simplifier = ExprSimplifier::new(SimplifyContext::default());
    let original = expr.clone();
    expr.transform_down(|e| {
        if matches!(e, Expr::Literal(..)) {
            return Ok(Transformed::new(e, false, TreeNodeRecursion::Jump));
        }
        let constant = e.column_refs().is_empty()
            && !e.is_volatile()
            && !matches!(e, Expr::AggregateFunction(_) | Expr::WindowFunction(_));
        if constant {
            if let Ok(folded @ Expr::Literal(..)) = simplifier.simplify(e.clone()) {
                return Ok(Transformed::new(folded, true, TreeNodeRecursion::Jump));
            }
        }
        Ok(Transformed::no(e))
    })
    .map_or(original, |t| t.data)
}

/// The value of a literal (after folding), if `expr` is one.
pub fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match strip_alias(expr) {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

/// The value of a numeric literal as `f64` (`None` for anything else, NULL included).
pub fn number(expr: &Expr) -> Option<f64> {
    match literal(expr)?.cast_to(&datafusion::arrow::datatypes::DataType::Float64) {
        Ok(ScalarValue::Float64(v)) => v,
        _ => None,
    }
}
