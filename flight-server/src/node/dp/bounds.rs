//! How large a summed expression can be for one record, from the contracts' public bounds of
//! the measures it reads: interval arithmetic over the few shapes a statistic is written in
//! (casts, `+ − ×`, division by a constant, `CASE` with bounded branches, `least`, `greatest`,
//! `abs`, `round`, `coalesce`). An expression it cannot bound cannot be summed with calibrated
//! noise and is refused.
//!
//! The interval only chooses the clamp: the node clamps each record's value to it before
//! summing, so a record outside its contract's bounds still moves the sum by no more.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{BinaryExpr, Case, Expr, Operator};

/// The closed range `[low, high]` a value lies in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

impl Interval {
    fn point(v: f64) -> Interval {
        Interval { low: v, high: v }
    }

    fn of(a: f64, b: f64) -> Interval {
        Interval {
            low: a.min(b),
            high: a.max(b),
        }
    }

    fn union(self, other: Interval) -> Interval {
        Interval::of(self.low.min(other.low), self.high.max(other.high))
    }

    /// Widened to whole numbers (a cast or rounding moves a value by less than one).
    fn whole(self) -> Interval {
        Interval::of(self.low.floor(), self.high.ceil())
    }

    fn times(self, other: Interval) -> Interval {
        let corners = [
            self.low * other.low,
            self.low * other.high,
            self.high * other.low,
            self.high * other.high,
        ];
        Interval::of(
            corners.iter().copied().fold(f64::INFINITY, f64::min),
            corners.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        )
    }

    /// `x * x`: never negative.
    fn square(self) -> Interval {
        let high = (self.low * self.low).max(self.high * self.high);
        let low = if self.low <= 0.0 && self.high >= 0.0 {
            0.0
        } else {
            (self.low * self.low).min(self.high * self.high)
        };
        Interval::of(low, high)
    }

    /// The largest magnitude a value in the range has.
    pub fn magnitude(self) -> f64 {
        self.low.abs().max(self.high.abs())
    }
}

/// A base column's public bounds, by table and column (`None` for a column without them).
pub type MeasureBounds<'a> = &'a dyn Fn(&str, &str) -> Option<(f64, f64)>;

/// The range of `expr` (over base columns) for one record, or `None` when it cannot be bounded.
pub fn interval(expr: &Expr, measure: MeasureBounds) -> Option<Interval> {
    within(expr, measure, &[])
}

/// What a `CASE` branch knows of a column's value: the range its conditions leave it.
type Known = (Column, Interval);

/// The range of `expr` where each column of `known` lies in its range (when not NULL).
fn within(expr: &Expr, measure: MeasureBounds, known: &[Known]) -> Option<Interval> {
    let finite = |i: Interval| (i.low.is_finite() && i.high.is_finite()).then_some(i);
    let bound = |e: &Expr| within(e, measure, known);
    let result = match expr {
        Expr::Alias(a) => bound(&a.expr)?,
        Expr::Column(
            column @ Column {
                relation: Some(table),
                name,
                ..
            },
        ) => {
            let (low, high) = measure(table.table(), name)?;
            let contract = Interval::of(low, high);
            known
                .iter()
                .filter(|(c, _)| c == column)
                .try_fold(contract, |range, (_, k)| {
                    let (low, high) = (range.low.max(k.low), range.high.min(k.high));
                    (low <= high).then(|| Interval::of(low, high))
                })
                // Conditions no value meets: the branch is never taken; the contract's range stands.
                .unwrap_or(contract)
        }
        // NULL is not summed: it adds nothing.
        Expr::Literal(value, _) if value.is_null() => Interval::point(0.0),
        Expr::Literal(value, _) => Interval::point(number(value)?),
        Expr::Cast(c) => cast_interval(bound(&c.expr)?, c.field.data_type()),
        Expr::TryCast(c) => cast_interval(bound(&c.expr)?, c.field.data_type()),
        Expr::Negative(inner) => {
            let i = bound(inner)?;
            Interval::of(-i.high, -i.low)
        }
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (l, r) = (bound(left)?, bound(right)?);
            match op {
                Operator::Plus => Interval::of(l.low + r.low, l.high + r.high),
                Operator::Minus => Interval::of(l.low - r.high, l.high - r.low),
                Operator::Multiply if left == right => l.square(),
                Operator::Multiply => l.times(r),
                Operator::Divide if r.low == r.high && r.low != 0.0 => Interval::of(l.low / r.low, l.high / r.low),
                _ => return None,
            }
        }
        Expr::Case(Case {
            expr: operand,
            when_then_expr,
            else_expr,
        }) => {
            // Each branch is taken when its condition is true and no earlier one was. In
            // `CASE x WHEN v …` a branch's "condition" is a value compared with x: it tells
            // nothing here.
            let mut known = known.to_vec();
            let searched = operand.is_none();
            let mut range: Option<Interval> = None;
            for (condition, then) in when_then_expr {
                let mut taken = known.clone();
                if searched {
                    facts(condition, true, &mut taken);
                }
                let branch = within(then, measure, &taken)?;
                range = Some(range.map_or(branch, |r| r.union(branch)));
                if searched {
                    facts(condition, false, &mut known);
                }
            }
            let otherwise = match else_expr {
                Some(e) => within(e, measure, &known)?,
                None => Interval::point(0.0),
            };
            range.map_or(otherwise, |r| r.union(otherwise))
        }
        Expr::ScalarFunction(f) => {
            // least and greatest ignore NULLs, so a NULL argument bounds nothing.
            let ignores_nulls = matches!(f.name(), "least" | "greatest");
            let args = f
                .args
                .iter()
                .filter(|a| !(ignores_nulls && matches!(a, Expr::Literal(v, _) if v.is_null())))
                .map(bound)
                .collect::<Option<Vec<_>>>()?;
            let first = match args.first() {
                Some(first) => *first,
                None if ignores_nulls => Interval::point(0.0),
                None => return None,
            };
            let whole_places = f.args.iter().skip(1).all(|a| {
                matches!(a, Expr::Literal(v, _) if number(v).is_some_and(|n| (0.0..=15.0).contains(&n) && n.fract() == 0.0))
            });
            match f.name() {
                "least" => args
                    .iter()
                    .fold(first, |a, b| Interval::of(a.low.min(b.low), a.high.min(b.high))),
                "greatest" => args
                    .iter()
                    .fold(first, |a, b| Interval::of(a.low.max(b.low), a.high.max(b.high))),
                "coalesce" => args.iter().fold(first, |a, b| a.union(*b)),
                "abs" if args.len() == 1 => {
                    let low = if first.low <= 0.0 && first.high >= 0.0 {
                        0.0
                    } else {
                        first.low.abs().min(first.high.abs())
                    };
                    Interval::of(low, first.magnitude())
                }
                // Rounding to whole places or finer stays between floor and ceiling.
                "round" | "trunc" if whole_places => first.whole(),
                "floor" | "ceil" if args.len() == 1 => first.whole(),
                _ => return None,
            }
        }
        _ => return None,
    };
    finite(result)
}

/// Adds to `known` the ranges `condition` leaves columns in when it is true (`holds`), or when
/// it is not true (false or NULL: a column that is not NULL then meets the negation). Only
/// comparisons of a column with a number, and their conjunctions (disjunctions when not true),
/// tell anything. A range learnt wrongly would only bias a sum: every value is clamped to the
/// range found, so the noise stays calibrated.
fn facts(condition: &Expr, holds: bool, known: &mut Vec<Known>) {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = condition else {
        return;
    };
    match (op, holds) {
        (Operator::And, true) | (Operator::Or, false) => {
            facts(left, holds, known);
            facts(right, holds, known);
            return;
        }
        _ => {}
    }
    let (column, op, value) = match (uncast(left), uncast(right)) {
        (Expr::Column(c), Expr::Literal(v, _)) => (c, *op, v),
        (Expr::Literal(v, _), Expr::Column(c)) => match op.swap() {
            Some(swapped) => (c, swapped, v),
            None => return,
        },
        _ => return,
    };
    let Some(v) = number(value) else {
        return;
    };
    let op = if holds { Some(op) } else { op.negate() };
    let range = match op {
        Some(Operator::Lt | Operator::LtEq) => Interval::of(f64::NEG_INFINITY, v),
        Some(Operator::Gt | Operator::GtEq) => Interval::of(v, f64::INFINITY),
        Some(Operator::Eq) => Interval::point(v),
        _ => return,
    };
    known.push((column.clone(), range));
}

/// `expr` without the casts around it (a comparison of a cast column bounds the column, to
/// within the rounding an integer cast does, which the clamp absorbs).
fn uncast(expr: &Expr) -> &Expr {
    match expr {
        Expr::Cast(c) => uncast(&c.expr),
        Expr::TryCast(c) => uncast(&c.expr),
        other => other,
    }
}

fn cast_interval(inner: Interval, to: &DataType) -> Interval {
    if to.is_integer() {
        inner.whole()
    } else {
        inner
    }
}

fn number(value: &ScalarValue) -> Option<f64> {
    if !value.data_type().is_numeric() {
        return None;
    }
    match value.cast_to(&DataType::Float64).ok()? {
        ScalarValue::Float64(Some(v)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::functions::expr_fn::{coalesce, greatest, least};
    use datafusion::functions::math::expr_fn::{abs, round};
    use datafusion::logical_expr::{cast, col, lit, when};

    fn measure(table: &str, name: &str) -> Option<(f64, f64)> {
        match (table, name) {
            ("t", "los") => Some((0.0, 365.0)),
            ("t", "delta") => Some((-10.0, 20.0)),
            _ => None,
        }
    }

    fn los() -> Expr {
        col("t.los")
    }

    #[test]
    fn bounds_of_the_shapes_a_statistic_is_written_in() {
        type Row = (&'static str, Expr, Option<(f64, f64)>);
        let cases: Vec<Row> = vec![
            ("a measure", los(), Some((0.0, 365.0))),
            ("a constant", lit(3), Some((3.0, 3.0))),
            (
                "a cast to an integer",
                cast(col("t.delta") / lit(3), DataType::Int64),
                Some((-4.0, 7.0)),
            ),
            (
                "an indicator",
                when(col("t.sex").eq(lit("F")), lit(1.0)).otherwise(lit(0.0)).unwrap(),
                Some((0.0, 1.0)),
            ),
            (
                "a CASE without ELSE",
                when(col("t.sex").eq(lit("F")), los()).end().unwrap(),
                Some((0.0, 365.0)),
            ),
            ("a square", los() * los(), Some((0.0, 133_225.0))),
            (
                "a square of a signed measure",
                col("t.delta") * col("t.delta"),
                Some((0.0, 400.0)),
            ),
            ("a product", los() * col("t.delta"), Some((-3650.0, 7300.0))),
            ("a difference", los() - col("t.delta"), Some((-20.0, 375.0))),
            ("a negation", -los(), Some((-365.0, 0.0))),
            ("a division by a constant", los() / lit(-5), Some((-73.0, 0.0))),
            (
                "a clamp chosen by the researcher",
                least(vec![los(), lit(30)]),
                Some((0.0, 30.0)),
            ),
            ("a floor", greatest(vec![col("t.delta"), lit(0)]), Some((0.0, 20.0))),
            ("abs", abs(col("t.delta")), Some((0.0, 20.0))),
            ("coalesce", coalesce(vec![col("t.delta"), lit(50)]), Some((-10.0, 50.0))),
            (
                "a least that ignores NULL",
                least(vec![los(), lit(ScalarValue::Int64(None))]),
                Some((0.0, 365.0)),
            ),
            (
                "rounding to places",
                round(vec![col("t.delta"), lit(2)]),
                Some((-10.0, 20.0)),
            ),
            (
                "a clamp written as CASE",
                when(los().gt(lit(30)), lit(30)).otherwise(los()).unwrap(),
                Some((0.0, 30.0)),
            ),
            (
                "a band of a measure",
                when(los().lt(lit(2)), lit(0))
                    .when(los().lt_eq(lit(7)), los())
                    .otherwise(lit(7))
                    .unwrap(),
                Some((0.0, 7.0)),
            ),
            (
                "a condition of two comparisons",
                when(
                    col("t.delta")
                        .gt_eq(lit(0))
                        .and(cast(col("t.delta"), DataType::Float64).lt(lit(5.0))),
                    col("t.delta"),
                )
                .otherwise(lit(0))
                .unwrap(),
                Some((0.0, 5.0)),
            ),
            (
                "a condition that tells nothing of the value",
                when(col("t.sex").eq(lit("F")).or(los().gt(lit(30))), los())
                    .otherwise(lit(0))
                    .unwrap(),
                Some((0.0, 365.0)),
            ),
            (
                "a CASE on a value, whose branches compare it with booleans",
                Expr::Case(Case::new(
                    Some(Box::new(col("t.flag"))),
                    vec![(Box::new(los().lt_eq(lit(30))), Box::new(los()))],
                    Some(Box::new(lit(0))),
                )),
                Some((0.0, 365.0)),
            ),
            ("rounding to hundreds", round(vec![los(), lit(-2)]), None),
            ("rounding to a column's places", round(vec![lit(1.0), los()]), None),
            ("a column without bounds", col("t.person"), None),
            ("a division by a column", los() / los(), None),
            ("text", lit("x"), None),
        ];
        for (what, expr, expected) in cases {
            let got = interval(&expr, &measure).map(|i| (i.low, i.high));
            assert_eq!(got, expected, "{what}: {expr}");
        }
    }
}
