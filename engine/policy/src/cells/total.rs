//! Keys, conditions and statistics' arguments must be *total*: they never fail on a record.
//!
//! A failure is a message the researcher sees, and whether it happens depends on the records:
//! `CAST(CASE WHEN diagnosis = 'K51' THEN diagnosis END AS INT)` fails exactly when such a record
//! exists, and the error text even carries its value. So only expressions that cannot fail are
//! allowed: comparisons, `AND`/`OR`/`NOT`, `IN`, `LIKE`, `BETWEEN`, `CASE`, `IS …`, `TRY_CAST`,
//! casts that cannot fail, scaling by a positive constant, and a few string and date functions.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::{Expr, Operator};

use super::fold::{literal, number};
use super::{is_comparison, CellRules};
use crate::refusal::Refusal;

/// Functions that cannot fail on any value (with the literal arguments checked below).
const TOTAL_FUNCTIONS: &[&str] = &[
    "date_trunc",
    "datetrunc",
    "date_part",
    "datepart",
    "upper",
    "lower",
    "trim",
    "btrim",
    "ltrim",
    "rtrim",
    "length",
    "char_length",
    "character_length",
    "octet_length",
    "concat",
    "concat_ws",
    "coalesce",
    "substr",
    "substring",
    "left",
    "right",
    "starts_with",
    "ends_with",
];

/// Date parts `date_part`/`date_trunc` accept (any other unit fails).
const UNITS: &[&str] = &[
    "year", "quarter", "month", "week", "day", "dow", "doy", "hour", "minute", "second",
];

fn failing(what: impl std::fmt::Display) -> Refusal {
    Refusal::new(format!(
        "{what} cannot be used in a group key, a condition or a statistic: it could fail on a record, and a \
         failure would tell that the record exists (use TRY_CAST for conversions)"
    ))
}

impl CellRules<'_> {
    /// Refuses anything in `expr` (over base columns) that could fail on some record.
    pub(super) fn check_total(&self, expr: &Expr) -> Result<(), Refusal> {
        let mut outcome = Ok(());
        let _ = expr.apply(|e| match self.total_node(e) {
            Ok(()) => Ok(TreeNodeRecursion::Continue),
            Err(refusal) => {
                outcome = Err(refusal);
                Ok(TreeNodeRecursion::Stop)
            }
        });
        outcome
    }

    /// Whether one node of an expression can fail (its children are judged on their own).
    #[allow(deprecated)] // Expr::Wildcard is listed so the match stays exhaustive
    fn total_node(&self, e: &Expr) -> Result<(), Refusal> {
        match e {
            Expr::Column(_) | Expr::Literal(..) | Expr::Alias(_) | Expr::TryCast(_) | Expr::Case(_) => Ok(()),
            Expr::Not(_)
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsTrue(_)
            | Expr::IsFalse(_)
            | Expr::IsUnknown(_)
            | Expr::IsNotTrue(_)
            | Expr::IsNotFalse(_)
            | Expr::IsNotUnknown(_) => Ok(()),
            Expr::Like(like) if like.escape_char.is_none() && literal(&like.pattern).is_some() => Ok(()),
            Expr::BinaryExpr(b) if is_comparison(b.op) => {
                // Comparing text with a number or a date would convert the text, which can fail.
                match self.comparable(&b.left, &b.right) {
                    true => Ok(()),
                    false => Err(failing(format!("`{e}` (it compares values of different kinds)"))),
                }
            }
            Expr::Between(between) => {
                match self.comparable(&between.expr, &between.low) && self.comparable(&between.expr, &between.high) {
                    true => Ok(()),
                    false => Err(failing(format!("`{e}` (it compares values of different kinds)"))),
                }
            }
            Expr::InList(list) => match list.list.iter().all(|item| self.comparable(&list.expr, item)) {
                true => Ok(()),
                false => Err(failing(format!("`{e}` (it compares values of different kinds)"))),
            },
            Expr::BinaryExpr(b) => match b.op {
                Operator::And
                | Operator::Or
                | Operator::StringConcat
                | Operator::LikeMatch
                | Operator::ILikeMatch
                | Operator::NotLikeMatch
                | Operator::NotILikeMatch => Ok(()),
                // Scaling a number by a modest positive constant cannot fail or overflow the contracts' bounds.
                Operator::Multiply | Operator::Divide
                    if (scale(&b.right) && self.is_number(&b.left))
                        || (b.op == Operator::Multiply && scale(&b.left) && self.is_number(&b.right)) =>
                {
                    Ok(())
                }
                Operator::Multiply | Operator::Plus | Operator::Minus
                    if self.noised
                        && [&b.left, &b.right]
                            .iter()
                            .all(|x| self.data_type_of(x) == Some(DataType::Float64)) =>
                {
                    Ok(())
                }
                _ => Err(Refusal::new(format!(
                    "`{e}`: only scaling by a positive constant is available in a group key, a condition or a \
                     statistic, by a factor from 1e-6 to 1e6 (a sum of `x - c`, `-x` or `x * y` is not the sum of \
                     contributions it appears to be)"
                ))),
            },
            Expr::Cast(cast) => match self.data_type_of(&cast.expr) {
                Some(from) if infallible(&from, cast.field.data_type()) => Ok(()),
                _ => Err(failing(format!("`{e}`"))),
            },
            Expr::ScalarFunction(f) => {
                let name = f.func.name();
                let literals_ok = match name {
                    "date_trunc" | "datetrunc" | "date_part" | "datepart" => {
                        f.args.first().and_then(literal).is_some_and(|v| {
                            UNITS.contains(&v.to_string().trim_matches('\'').to_ascii_lowercase().as_str())
                        }) && f
                            .args
                            .get(1)
                            .and_then(|a| self.data_type_of(a))
                            .is_some_and(|t| family(&t) == Family::Time)
                    }
                    "substr" | "substring" | "left" | "right" => f
                        .args
                        .iter()
                        .skip(1)
                        .all(|a| number(a).is_some_and(|n| n >= 0.0 && n.fract() == 0.0)),
                    _ => true,
                };
                // A noising trust bounds statistics with these. least and greatest cannot fail
                // on numbers; abs and rounding overflow on integers, so only floating point, and
                // rounding only to a literal number of places (10^places overflows to NaN).
                let numeric = self.noised
                    && match name {
                        "least" | "greatest" => f.args.iter().all(|a| self.is_number(a)),
                        "abs" | "floor" | "ceil" => {
                            f.args.len() == 1 && self.data_type_of(&f.args[0]) == Some(DataType::Float64)
                        }
                        "round" | "trunc" => {
                            f.args.first().and_then(|a| self.data_type_of(a)) == Some(DataType::Float64)
                                && f.args
                                    .iter()
                                    .skip(1)
                                    .all(|a| number(a).is_some_and(|n| (0.0..=15.0).contains(&n) && n.fract() == 0.0))
                        }
                        _ => false,
                    };
                match (TOTAL_FUNCTIONS.contains(&name) && literals_ok) || numeric {
                    true => Ok(()),
                    false => Err(failing(format!("`{e}`"))),
                }
            }
            _ => Err(failing(format!("`{e}`"))),
        }
    }

    /// The type of an expression over base columns, where it is plain to see.
    fn data_type_of(&self, expr: &Expr) -> Option<DataType> {
        match expr {
            Expr::Column(c) => self.info(c).map(|i| i.column.data_type.clone()),
            Expr::Literal(v, _) => Some(v.data_type()),
            Expr::Cast(c) => Some(c.field.data_type().clone()),
            Expr::TryCast(c) => Some(c.field.data_type().clone()),
            Expr::Alias(a) => self.data_type_of(&a.expr),
            Expr::Case(case) => case
                .when_then_expr
                .iter()
                .map(|(_, then)| then.as_ref())
                .chain(case.else_expr.as_deref())
                .find(|e| !literal(e).is_some_and(|v| v.is_null()))
                .and_then(|e| self.data_type_of(e)),
            Expr::BinaryExpr(b) if matches!(b.op, Operator::Multiply | Operator::Divide) => self
                .data_type_of(&b.left)
                .filter(|t| t.is_numeric())
                .or(Some(DataType::Float64)),
            Expr::BinaryExpr(b) if b.op == Operator::StringConcat => Some(DataType::Utf8),
            Expr::ScalarFunction(f) => match f.func.name() {
                "date_trunc" | "datetrunc" => f.args.get(1).and_then(|a| self.data_type_of(a)),
                "date_part" | "datepart" | "length" | "char_length" | "character_length" | "octet_length" => {
                    Some(DataType::Float64)
                }
                "coalesce" => f.args.first().and_then(|a| self.data_type_of(a)),
                "starts_with" | "ends_with" => Some(DataType::Boolean),
                "abs" | "floor" | "ceil" | "round" | "trunc" => f.args.first().and_then(|a| self.data_type_of(a)),
                // The widest type the arguments could be coerced to.
                "least" | "greatest" => {
                    let types = f
                        .args
                        .iter()
                        .map(|a| self.data_type_of(a))
                        .collect::<Option<Vec<_>>>()?;
                    match types.iter().all(|t| t.is_integer()) {
                        true => Some(DataType::Int64),
                        false => Some(DataType::Float64),
                    }
                }
                _ => Some(DataType::Utf8),
            },
            e if super::statistics::is_condition(e) => Some(DataType::Boolean),
            _ => None,
        }
    }

    fn is_number(&self, expr: &Expr) -> bool {
        self.data_type_of(expr).is_some_and(|t| family(&t) == Family::Number)
    }

    /// Whether comparing `a` with `b` converts nothing that could fail: values of one kind, or a
    /// literal (converted once, when the query is planned).
    fn comparable(&self, a: &Expr, b: &Expr) -> bool {
        let (x, y) = (
            self.data_type_of(a).map(|t| family(&t)),
            self.data_type_of(b).map(|t| family(&t)),
        );
        match (literal(a).is_some(), literal(b).is_some()) {
            // A text literal is converted to the other side's type once, when the query is planned.
            (true, _) if x == Some(Family::Text) => true,
            (_, true) if y == Some(Family::Text) => true,
            _ => x.is_some() && x == y,
        }
    }
}

/// Kinds of values that compare without conversion.
#[derive(Debug, PartialEq, Eq)]
enum Family {
    Text,
    Number,
    Time,
    Bool,
    Other,
}

fn family(t: &DataType) -> Family {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Family::Text,
        t if t.is_numeric() => Family::Number,
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => Family::Time,
        DataType::Boolean => Family::Bool,
        _ => Family::Other,
    }
}

/// A positive literal from a millionth to a million: scaling a measure by it cannot overflow
/// (statistics also bound the product of a chain of them).
fn scale(expr: &Expr) -> bool {
    number(expr).is_some_and(|v| (1e-6..=1e6).contains(&v))
}

/// Whether casting `from` to `to` succeeds for every value.
fn infallible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let width = |t: &DataType| match t {
        Int8 | UInt8 => Some(1),
        Int16 | UInt16 => Some(2),
        Int32 | UInt32 => Some(4),
        Int64 | UInt64 => Some(8),
        _ => None,
    };
    from == to
        || matches!(to, Utf8 | LargeUtf8 | Utf8View)
        || (from.is_integer() && matches!(to, Float64 | Float32))
        || (from.is_signed_integer() && to.is_signed_integer() && width(from) <= width(to))
        || (matches!(from, Float32) && matches!(to, Float64))
        || (matches!(from, Boolean) && (to.is_integer() || to.is_floating()))
        || (matches!(from, Date32 | Date64) && matches!(to, Date32 | Date64 | Timestamp(..)))
        || (matches!(from, Timestamp(..)) && matches!(to, Date32 | Date64))
        || (matches!(from, Utf8 | LargeUtf8 | Utf8View) && matches!(to, Utf8 | LargeUtf8 | Utf8View))
}
