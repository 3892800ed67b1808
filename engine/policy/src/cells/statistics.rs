//! The whitelist of statistics over person data, each classified by the records it is built
//! from, not by its spelling.
//!
//! | statistic | argument | built from (each class must reach the threshold) |
//! |---|---|---|
//! | `count(*)`, `count(x)` | anything the rules allow | the records counted |
//! | `sum`/`avg` of a constant or of classes (`CASE WHEN box THEN 1 ELSE 0 END`, a boolean) | | each class of records with one value: released as Σ value × protected class count |
//! | `sum`/`avg` of a measure (scaled by a positive constant, or picked by `CASE WHEN box THEN x ELSE 0 END`, one scale in every branch) | | the records contributing (non-zero); dominance if sensitive |
//! | `var`/`stddev` of a measure | | the records with a value and those contributing (non-zero); dominance if sensitive |
//! | `corr`, `covar_*`, `regr_*` of two non-sensitive measures | | the pairs with both values |
//! | `count(DISTINCT person_id)` | | the records (people within one trust) |
//!
//! In a researcher's query a spread has one spelling, the sample one: `var_pop`, `stddev_pop`
//! and `covar_pop` would carry the same noise, and their ratio to the sample spelling,
//! n / (n - 1), would give the exact number of records.
//!
//! Everything else — `min`/`max`, `bool_and`/`bool_or`, variances of indicators, models of
//! indicators or of sensitive measures, sums of dimensions — is refused.

use datafusion::common::ScalarValue;
use datafusion::logical_expr::{lit, Case, Expr, Operator};
use tessera_schemas::Role;

use super::fold::{literal, number};
use super::{is_comparison, CellRules, Origin};
use crate::expr_util::strip_alias;
use crate::refusal::Refusal;

/// How a statistic is protected.
#[derive(Debug, Clone, PartialEq)]
pub enum StatisticKind {
    /// A number of records (`count`, `regr_count`): threshold on itself, then rounded.
    Count,
    /// A sum or mean of a constant or of classes: built from each class's protected count,
    /// `Σ value × count` (divided by `Σ count` for a mean).
    Classes { values: Vec<f64>, mean: bool },
    /// A sum or mean of a measure: its contributors reach the threshold; a sensitive measure's
    /// largest contributions may not dominate.
    Magnitude { sensitive: Option<String> },
    /// Variance or standard deviation of a measure (and the moments behind models).
    Moments { sensitive: Option<String> },
    /// Correlation, covariance, regression: threshold and residual degrees of freedom.
    Model,
}

/// One statistic's protection: its kind and the classes of records it is built from.
#[derive(Debug, Clone)]
pub struct StatisticShape {
    pub kind: StatisticKind,
    /// Conditions over the aggregate's input (on top of the statistic's FILTER), one per class;
    /// `true` for all records.
    pub classes: Vec<Expr>,
}

/// What an argument is, judged on its definition over contract columns.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Shape {
    Constant(f64),
    /// Finitely many values, each taken by a box of records.
    Classes(Vec<ScalarValue>),
    /// A measure scaled by a positive constant, or picked in a box (else 0 or NULL).
    Measure {
        column: String,
        sensitive: bool,
    },
    /// A public function of one column (a dimension, a band).
    Key,
    Identifier,
}

/// The smallest and largest overall factor a measure may be scaled by inside a statistic.
const MIN_SCALE: f64 = 1e-6;
const MAX_SCALE: f64 = 1e6;

fn refuse(message: impl Into<String>) -> Refusal {
    Refusal::new(message)
}

impl CellRules<'_> {
    /// A statistic a noising trust computes: its arguments and FILTER never fail on a record
    /// (which statistics it noises, and how, is the trust's privacy mode's decision).
    pub(super) fn check_noised(
        &self,
        expr: &Expr,
        resolve: &dyn Fn(&Expr) -> Result<Expr, Refusal>,
    ) -> Result<(), Refusal> {
        let Expr::AggregateFunction(f) = strip_alias(expr) else {
            return Err(refuse(format!("`{expr}` is not an aggregate Tessera can protect")));
        };
        if let Some(filter) = &f.params.filter {
            self.check_box(&resolve(filter)?)?;
        }
        for arg in &f.params.args {
            self.check_total(&resolve(arg)?)?;
        }
        Ok(())
    }

    /// Classifies one aggregate expression of an aggregate whose input has `schema`.
    pub(super) fn statistic(
        &self,
        expr: &Expr,
        resolve: &dyn Fn(&Expr) -> Result<Expr, Refusal>,
    ) -> Result<StatisticShape, Refusal> {
        let Expr::AggregateFunction(f) = strip_alias(expr) else {
            return Err(refuse(format!("`{expr}` is not an aggregate Tessera can protect")));
        };
        let name = f.func.name();
        let params = &f.params;
        if let Some(filter) = &params.filter {
            self.check_box(&resolve(filter)?)?;
        }
        match name {
            "min" | "max" => {
                return Err(refuse(format!(
                    "{name}() over records of people is one person's value; count(*) by bands (e.g. GROUP BY CASE \
                     WHEN los_days <= 7 THEN … END) shows the spread instead"
                )))
            }
            "bool_and" | "bool_or" => {
                return Err(refuse(format!(
                    "{name}() over records of people tells whether a single record exists; use a rate, \
                     avg(CASE WHEN … THEN 1 ELSE 0 END), which is protected class by class"
                )))
            }
            _ => {}
        }
        let resolved = params.args.iter().map(resolve).collect::<Result<Vec<_>, _>>()?;
        let shapes = resolved.iter().map(|a| self.shape(a)).collect::<Result<Vec<_>, _>>()?;
        let args = &params.args;
        let shape = |kind, classes| Ok(StatisticShape { kind, classes });
        if params.distinct {
            return match (name, shapes.as_slice()) {
                ("count", [Shape::Identifier]) => shape(StatisticKind::Count, vec![lit(true)]),
                _ => Err(refuse(format!(
                    "{name}(DISTINCT …) is not available under disclosure control: it would count categories with \
                     fewer records than the threshold; GROUP BY the column and count(*) instead"
                ))),
            };
        }
        let not_null = |i: usize| args[i].clone().is_not_null();
        let measure = |s: &Shape| match s {
            Shape::Measure { column, sensitive } => Some((column.clone(), *sensitive)),
            _ => None,
        };
        match (name, shapes.as_slice()) {
            ("count", []) | ("count", [Shape::Constant(_)]) => shape(StatisticKind::Count, vec![lit(true)]),
            ("count", [_]) => shape(StatisticKind::Count, vec![not_null(0)]),
            ("sum" | "avg", [Shape::Constant(c)]) => shape(
                StatisticKind::Classes {
                    values: vec![*c],
                    mean: name == "avg",
                },
                vec![lit(true)],
            ),
            ("sum" | "avg", [Shape::Classes(values)]) => {
                let numbers = values
                    .iter()
                    .map(|v| number(&Expr::Literal(v.clone(), None)).or(bool_number(v)))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| refuse(format!("{name}() needs numbers, not `{}`", args[0])))?;
                let classes = values.iter().map(|v| class_of(&args[0], v)).collect();
                shape(
                    StatisticKind::Classes {
                        values: numbers,
                        mean: name == "avg",
                    },
                    classes,
                )
            }
            ("sum" | "avg", [Shape::Measure { column, sensitive }]) => shape(
                StatisticKind::Magnitude {
                    sensitive: sensitive.then(|| column.clone()),
                },
                vec![args[0].clone().not_eq(lit(0i64))],
            ),
            ("var_pop" | "stddev_pop", [Shape::Measure { .. }]) if self.origin == Origin::Query => {
                Err(population_spelling(name))
            }
            // Built from the records with a value and from those contributing (non-zero), like
            // a sum: a spread among zeros is one contributor's value.
            ("var" | "var_pop" | "stddev" | "stddev_pop", [Shape::Measure { column, sensitive }]) => shape(
                StatisticKind::Moments {
                    sensitive: sensitive.then(|| column.clone()),
                },
                vec![not_null(0), args[0].clone().not_eq(lit(0i64))],
            ),
            ("var" | "var_pop" | "stddev" | "stddev_pop", _) => Err(refuse(format!(
                "{name}() is available for measures only: the variance of an indicator or a constant reveals counts \
                 (use avg(CASE WHEN … THEN 1 ELSE 0 END) for a rate)"
            ))),
            (model, [a, b]) if is_model(model) => {
                let (Some((x, xs)), Some((y, ys))) = (measure(a), measure(b)) else {
                    return Err(refuse(format!(
                        "{model}() is available for two measures only: with an indicator or a constant it can single \
                         out records"
                    )));
                };
                let moment_partial = matches!(
                    model,
                    "regr_count" | "regr_avgx" | "regr_avgy" | "regr_sxx" | "regr_syy" | "regr_sxy"
                );
                if (xs || ys) && (self.origin == Origin::Query || !moment_partial) {
                    let sensitive = if xs { x } else { y };
                    return Err(refuse(format!(
                        "{model}() of {sensitive} is not available: {sensitive} is a sensitive measure, and a model \
                         can be driven by one patient's value; use avg({sensitive}) by bands of the other measure"
                    )));
                }
                if model == "covar_pop" && self.origin == Origin::Query {
                    return Err(population_spelling(model));
                }
                // The parts of a model are other spellings of a mean or a variance: asked as such,
                // they would get noise of their own, a second sample of the same value.
                if moment_partial && model != "regr_count" && self.origin == Origin::Query {
                    return Err(refuse(format!(
                        "{model}() is a part of a regression; ask avg(…) for a mean and var(…) or covar_samp(…) \
                         for spread, so that each statistic has one spelling and one noise"
                    )));
                }
                let pairs = not_null(0).and(not_null(1));
                let kind = match model {
                    "regr_count" => StatisticKind::Count,
                    "regr_avgx" | "regr_avgy" | "regr_sxx" | "regr_syy" | "regr_sxy" => {
                        StatisticKind::Moments { sensitive: None }
                    }
                    _ => StatisticKind::Model,
                };
                shape(kind, vec![pairs])
            }
            (tessera_protocol::names::TOP2, [Shape::Measure { .. }]) if self.origin == Origin::Fragment => {
                shape(StatisticKind::Magnitude { sensitive: None }, vec![lit(true)])
            }
            ("sum" | "avg", [Shape::Key | Shape::Identifier]) => Err(refuse(format!(
                "{name}({}) adds up codes, not a measure; count(*) GROUP BY it instead",
                args[0]
            ))),
            _ => Err(refuse(format!(
                "{name}({}) is not a statistic Tessera can protect. Available: count, sum/avg of a measure, a \
                 constant or an indicator, var/stddev of a measure, corr/covar/regr_* of two measures, \
                 count(DISTINCT person_id) within a trust",
                args.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// What an argument (resolved to base columns) is, or why it cannot be protected.
    pub(super) fn shape(&self, arg: &Expr) -> Result<Shape, Refusal> {
        let arg = strip_alias(arg);
        self.check_total(arg)?;
        if let Some(value) = literal(arg) {
            return Ok(Shape::Constant(number(arg).or(bool_number(value)).unwrap_or(0.0)));
        }
        if let Some((column, sensitive)) = self.proportional(arg)? {
            return Ok(Shape::Measure { column, sensitive });
        }
        if let Some(values) = self.value_set(arg)? {
            return Ok(Shape::Classes(values.into_iter().filter(|v| !v.is_null()).collect()));
        }
        if let Expr::Column(column) = arg {
            if self.info(column).is_some_and(|i| i.column.role == Role::Identifier) {
                return Ok(Shape::Identifier);
            }
        }
        self.check_key(arg, arg).map_err(|refusal| {
            refuse(format!(
                "`{arg}` is not something Tessera can protect inside a statistic: use a measure (scaled by a positive \
                 constant, or CASE WHEN <condition> THEN measure ELSE 0 END), an indicator (CASE WHEN <condition> \
                 THEN 1 ELSE 0 END) or a constant ({})",
                refusal.reason
            ))
        })?;
        Ok(Shape::Key)
    }

    /// The measure `expr` is proportional to, record by record (0 or NULL elsewhere).
    fn proportional(&self, expr: &Expr) -> Result<Option<(String, bool)>, Refusal> {
        let Some((column, sensitive, factor)) = self.scaled(expr, 1.0)? else {
            return Ok(None);
        };
        // A product of factors could overflow (a sum of `x / 1e-300` is infinite exactly when the
        // true sum passes a chosen line): the whole scaling stays within a millionfold.
        if !(MIN_SCALE..=MAX_SCALE).contains(&factor) {
            return Err(refuse(format!(
                "`{expr}` scales {column} by {factor:e}: a measure may be scaled by a factor from 1e-6 to 1e6 in all"
            )));
        }
        Ok(Some((column, sensitive)))
    }

    /// The measure `expr` is proportional to and the overall factor, `factor` so far.
    fn scaled(&self, expr: &Expr, factor: f64) -> Result<Option<(String, bool, f64)>, Refusal> {
        let positive = |e: &Expr| number(e).filter(|v| *v > 0.0 && v.is_finite());
        Ok(match strip_alias(expr) {
            Expr::Column(c) => self
                .info(c)
                .filter(|i| i.column.role == Role::Measure)
                .map(|i| (i.column.name.clone(), i.column.sensitive, factor)),
            Expr::Cast(c) if super::columns::keeps_values(c.field.data_type()) => self.scaled(&c.expr, factor)?,
            Expr::TryCast(c) if super::columns::keeps_values(c.field.data_type()) => self.scaled(&c.expr, factor)?,
            Expr::BinaryExpr(b) => match (b.op, positive(&b.left), positive(&b.right)) {
                (Operator::Multiply, _, Some(k)) => self.scaled(&b.left, factor * k)?,
                (Operator::Multiply, Some(k), _) => self.scaled(&b.right, factor * k)?,
                (Operator::Divide, _, Some(k)) => self.scaled(&b.left, factor / k)?,
                _ => None,
            },
            Expr::Case(case) => {
                let nothing = |e: &Expr| literal(e).is_some_and(|v| v.is_null()) || number(e) == Some(0.0);
                let mut found = None;
                for then in case.when_then_expr.iter().map(|(_, t)| t).chain(case.else_expr.iter()) {
                    if nothing(then) {
                        continue;
                    }
                    match self.scaled(then, factor)? {
                        Some((column, sensitive, k))
                            if found
                                .as_ref()
                                .is_none_or(|(c, s, _): &(String, bool, f64)| *c == column && *s == sensitive) =>
                        {
                            // Every branch must scale the measure alike: with two scales, the
                            // statistic has sum(x)'s contributors (and noise), and twice sum(x)
                            // less it is one box's exact sum.
                            if found.as_ref().is_some_and(|(_, _, f)| *f != k) {
                                return Err(refuse(format!(
                                    "`{expr}` scales {column} differently in its branches: in a CASE, a measure \
                                     keeps one scale (each branch the same multiple of {column}, or 0 / NULL)"
                                )));
                            }
                            found = Some((column, sensitive, k));
                        }
                        _ => return Ok(None),
                    }
                }
                if found.is_some() {
                    self.check_case_conditions(case)?;
                }
                found
            }
            _ => None,
        })
    }

    /// The values `expr` can take, if finitely many, each on a box of records.
    fn value_set(&self, expr: &Expr) -> Result<Option<Vec<ScalarValue>>, Refusal> {
        let expr = strip_alias(expr);
        if let Some(value) = literal(expr) {
            return Ok(Some(vec![value.clone()]));
        }
        match expr {
            Expr::Cast(c) => Ok(self.value_set(&c.expr)?.and_then(|values| {
                values
                    .iter()
                    .map(|v| v.cast_to(c.field.data_type()).ok())
                    .collect::<Option<Vec<_>>>()
            })),
            Expr::TryCast(c) => Ok(self.value_set(&c.expr)?.and_then(|values| {
                values
                    .iter()
                    .map(|v| v.cast_to(c.field.data_type()).ok())
                    .collect::<Option<Vec<_>>>()
            })),
            Expr::Case(case) => {
                let mut values = Vec::new();
                for then in case.when_then_expr.iter().map(|(_, t)| t).chain(case.else_expr.iter()) {
                    match self.value_set(then)? {
                        Some(v) => values.extend(v),
                        None => return Ok(None),
                    }
                }
                if case.else_expr.is_none() {
                    values.push(ScalarValue::Null);
                }
                self.check_case_conditions(case)?;
                let mut distinct: Vec<ScalarValue> = Vec::new();
                for value in values {
                    if !distinct.contains(&value) {
                        distinct.push(value);
                    }
                }
                Ok(Some(distinct))
            }
            e if is_condition(e) || self.is_boolean_column(e) => {
                self.check_box(e)?;
                Ok(Some(vec![
                    ScalarValue::Boolean(Some(true)),
                    ScalarValue::Boolean(Some(false)),
                ]))
            }
            _ => Ok(None),
        }
    }

    fn is_boolean_column(&self, expr: &Expr) -> bool {
        matches!(expr, Expr::Column(c) if self.info(c).is_some_and(|i| i.column.data_type == datafusion::arrow::datatypes::DataType::Boolean))
    }

    /// The tests of a CASE inside a statistic: one box, or several tests of one column (a
    /// banding), so that every class of records is a box.
    fn check_case_conditions(&self, case: &Case) -> Result<(), Refusal> {
        let tests = case
            .when_then_expr
            .iter()
            .map(|(when, _)| match &case.expr {
                Some(base) => base.as_ref().clone().eq(when.as_ref().clone()),
                None => when.as_ref().clone(),
            })
            .collect::<Vec<_>>();
        if let [only] = tests.as_slice() {
            return self.check_box(only);
        }
        let mut columns = tests.iter().flat_map(|t| t.column_refs()).collect::<Vec<_>>();
        columns.sort();
        columns.dedup();
        if columns.len() > 1 {
            return Err(refuse(
                "a CASE with several WHEN tests inside a statistic must test one column (a banding, e.g. CASE WHEN \
                 los_days <= 2 THEN … WHEN los_days <= 7 THEN … END); with one WHEN, the test may combine columns \
                 with AND",
            ));
        }
        for test in &tests {
            self.check_condition(test)?;
        }
        Ok(())
    }
}

pub(super) fn is_model(name: &str) -> bool {
    matches!(
        name,
        "corr"
            | "covar_samp"
            | "covar_pop"
            | "regr_slope"
            | "regr_intercept"
            | "regr_r2"
            | "regr_count"
            | "regr_avgx"
            | "regr_avgy"
            | "regr_sxx"
            | "regr_syy"
            | "regr_sxy"
    )
}

/// Whether `expr` is a boolean test.
pub(super) fn is_condition(expr: &Expr) -> bool {
    match expr {
        Expr::BinaryExpr(b) => is_comparison(b.op) || matches!(b.op, Operator::And | Operator::Or),
        Expr::Not(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::InList(_)
        | Expr::Like(_)
        | Expr::SimilarTo(_)
        | Expr::Between(_) => true,
        _ => false,
    }
}

fn bool_number(value: &ScalarValue) -> Option<f64> {
    match value {
        ScalarValue::Boolean(Some(b)) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// The records on which `arg` takes `value`.
fn class_of(arg: &Expr, value: &ScalarValue) -> Expr {
    match value {
        ScalarValue::Boolean(Some(true)) => arg.clone().is_true(),
        ScalarValue::Boolean(Some(false)) => arg.clone().is_false(),
        v => arg.clone().eq(Expr::Literal(v.clone(), None)),
    }
}

/// The refusal of a population spelling of a spread (see the module's documentation).
fn population_spelling(name: &str) -> Refusal {
    let sample = name.replace("_pop", "").replace("covar", "covar_samp");
    Refusal::new(format!(
        "{name}() is not available under disclosure control: beside {sample}() it would give the exact number of \
         records (their ratio is n / (n - 1)); ask {sample}() and multiply by (n - 1) / n with the released count"
    ))
}
