//! Splitting each aggregate into what a trust computes (partial) and how the centre merges it.
//!
//! | user asks | each trust returns | the centre computes |
//! |---|---|---|
//! | `count(x)`, `count(*)` | `count` | `sum` |
//! | `sum(x)` | `sum` | `sum` |
//! | `avg(x)` | `sum`, `count` | `sum / sum` |
//! | `min`, `max`, `bool_and`, `bool_or` | the same | the same |
//! | variance, stddev, covariance, corr, regr_* | `regr_count/avgx/avgy/sxx/syy/sxy` | Chan merge ([`super::moments`]) |
//! | `count/sum/avg(DISTINCT d)` | one row per group *and value of d* | the distinct aggregate over the values |
//!
//! When the query groups by `provider_code`, each group comes from one trust only, so distinct
//! counts are computed at the trust and summed.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, DFSchema};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{cast, lit, when, Expr, ExprSchemable};
use std::collections::BTreeSet;

use super::moments::{MergeMoments, Statistic};
use crate::disclosure::{ProtectKind, Top2};
use crate::expr_util::{aggregate_call, strip_alias};

/// The decomposition of all aggregates of one `Aggregate` node.
#[derive(Debug, Default)]
pub struct Decomposition {
    /// Aggregates each trust computes, in order; column `p{k}` of the partial answer.
    pub partials: Vec<Expr>,
    /// An extra grouping column (`d0`) for DISTINCT aggregates merged centrally.
    pub distinct: Option<Expr>,
    /// Merge aggregates over the partial columns; column `m{k}` of the central aggregate.
    pub merges: Vec<Expr>,
    /// Per user aggregate, its final value over the merge columns.
    pub finals: Vec<Expr>,
    /// Per user aggregate, how disclosure control judges it.
    pub protections: Vec<Protection>,
}

/// What disclosure control needs about one merged aggregate.
#[derive(Debug, Clone)]
pub struct Protection {
    pub kind: ProtectKind,
    /// Records contributing: the group's rows after the aggregate's own FILTER, or for sums and
    /// means the records with a non-zero value.
    pub support: Expr,
    /// Pairs used by a model (correlation, covariance, regression), for residual df.
    pub pairs: Option<Expr>,
    /// For a sum or mean of a sensitive measure: its two largest contributions and its total.
    pub dominance: Option<(Expr, Expr)>,
    /// Which of the group's records the statistic is built from, as conditions on them (`None`:
    /// all): its own FILTER, its arguments not NULL (a `count(x)` beside a `count(*)` would
    /// otherwise reveal how many are NULL), and for sums and means the non-zero records (for a
    /// rate, each class). Differencing is checked for each.
    pub populations: Vec<Option<Expr>>,
    /// What the statistic adds up over those records, so that only statistics of the same
    /// quantity are differenced against each other.
    pub measure: Measure,
}

/// The quantity a statistic is built from: differences between two releases reveal something
/// only when both are of the same quantity.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// Records: counts, sums of indicators, and the classes of a rate.
    Records,
    /// The sum of an expression (sums and means).
    Sum(Expr),
    /// Anything else (variances, models, minima…), by aggregate name and arguments.
    Other(String, Vec<Expr>),
}

/// Whether sums and means of sensitive measures are checked for dominance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dominance {
    /// No dominance rule is in force.
    Off,
    /// Checked: trusts send each group's two largest contributions.
    On,
    /// A rule is in force but the coordinator has no token, so trusts would not send them.
    NoCredentials,
}

/// What the decomposition needs to know about the query.
pub struct Context<'a> {
    pub state: &'a SessionState,
    /// Names of identifier columns in any contract (`person_id`).
    pub identifiers: &'a BTreeSet<String>,
    /// Names of sensitive measures in any contract (`cost_gbp`): their min/max is one person's value.
    pub sensitive: &'a BTreeSet<String>,
    /// The query groups by `provider_code`: every group belongs to one trust.
    pub grouped_by_trust: bool,
    /// The query's own GROUP BY expressions.
    pub group_exprs: &'a [Expr],
    /// Whether sums and means of sensitive measures get the dominance check.
    pub dominance: Dominance,
    /// The aggregate's input schema (for the nullability of arguments).
    pub input_schema: &'a DFSchema,
}

fn column(name: String) -> Expr {
    Expr::Column(Column::from_name(name))
}

fn unsupported(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

impl Context<'_> {
    fn call(&self, name: &str, args: Vec<Expr>, distinct: bool, filter: Option<Box<Expr>>) -> Result<Expr> {
        aggregate_call(self.state, name, args, distinct, filter)
    }
}

impl Decomposition {
    /// Column `p{k}` computing `expr` at each trust (shared when two aggregates need the same partial).
    fn partial(&mut self, expr: Expr) -> Expr {
        column(format!("p{}", position_or_push(&mut self.partials, expr)))
    }

    /// Column `m{k}` of the central merge (shared likewise).
    fn merge(&mut self, expr: Expr) -> Expr {
        column(format!("m{}", position_or_push(&mut self.merges, expr)))
    }

    /// The column holding the DISTINCT argument: a group column if the query already groups by it, else `d0`.
    fn distinct_column(&mut self, ctx: &Context, arg: &Expr) -> Result<Expr> {
        if let Some(i) = ctx.group_exprs.iter().position(|g| g == arg) {
            return Ok(column(format!("g{i}")));
        }
        match &self.distinct {
            Some(existing) if existing != arg => Err(unsupported(
                "over federated data, DISTINCT may be used with only one column or expression per query",
            )),
            _ => {
                self.distinct = Some(arg.clone());
                Ok(column("d0".into()))
            }
        }
    }

    /// Adds one user aggregate.
    pub fn add(&mut self, ctx: &Context, expr: &Expr) -> Result<()> {
        let Expr::AggregateFunction(f) = strip_alias(expr) else {
            return Err(unsupported(format!(
                "`{expr}` is not an aggregate Tessera can split across trusts"
            )));
        };
        let name = f.func.name().to_string();
        let params = &f.params;
        let (args, distinct, filter) = (params.args.clone(), params.distinct, params.filter.clone());
        if name == "min" || name == "max" {
            if let Some(measure) = args
                .iter()
                .flat_map(|a| a.column_refs())
                .find(|c| ctx.sensitive.contains(&c.name))
            {
                let measure = &measure.name;
                return Err(unsupported(format!(
                    "{name}({measure}) would release one patient's exact value ({measure} is a sensitive measure); \
                     use avg({measure}), or count(*) by bands of {measure}"
                )));
            }
        }
        let splittable = matches!(
            name.as_str(),
            "count" | "sum" | "avg" | "min" | "max" | "bool_and" | "bool_or"
        ) || Statistic::of_aggregate(&name).is_some();
        if !splittable {
            return Err(refusal_for(&name));
        }
        if !params.order_by.is_empty() {
            return Err(unsupported(format!(
                "{name}(… ORDER BY …) is not supported over federated data"
            )));
        }
        if distinct && filter.is_some() {
            return Err(unsupported(format!(
                "{name}(DISTINCT …) FILTER (WHERE …) is not supported over federated data"
            )));
        }
        let distinct_arg = if distinct {
            let [arg] = args.as_slice() else {
                return Err(unsupported(format!(
                    "{name}(DISTINCT …) takes one argument over federated data"
                )));
            };
            if let Some(identifier) = identifier_of(arg, ctx.identifiers) {
                if !ctx.grouped_by_trust {
                    return Err(unsupported(format!(
                        "count(DISTINCT {identifier}) across trusts is not supported yet: per-trust counts of people cannot be \
                         added up (a patient seen at two trusts would count twice). Add provider_code to GROUP BY to count \
                         people within each trust, or count(*) to count episodes"
                    )));
                }
            }
            Some(arg.clone())
        } else {
            None
        };
        let final_expr = match name.as_str() {
            "count" if distinct && ctx.grouped_by_trust => {
                let p = self.partial(ctx.call("count", args, true, None)?);
                let m = self.merge(ctx.call("sum", vec![p], false, None)?);
                when(m.clone().is_null(), lit(0i64)).otherwise(m)?
            }
            "count" if distinct => {
                let d = self.distinct_column(ctx, distinct_arg.as_ref().expect("distinct argument"))?;
                self.merge(ctx.call("count", vec![d], true, None)?)
            }
            "count" => {
                let p = self.partial(ctx.call("count", args, false, filter)?);
                let m = self.merge(ctx.call("sum", vec![p], false, None)?);
                when(m.clone().is_null(), lit(0i64)).otherwise(m)?
            }
            "sum" | "avg" if distinct => {
                let d = self.distinct_column(ctx, distinct_arg.as_ref().expect("distinct argument"))?;
                self.merge(ctx.call(&name, vec![d], true, None)?)
            }
            // These merge with themselves: a sum of sums, a min of mins, …
            "sum" | "min" | "max" | "bool_and" | "bool_or" => {
                let p = self.partial(ctx.call(&name, args, false, filter)?);
                self.merge(ctx.call(&name, vec![p], false, None)?)
            }
            "avg" => {
                let s = self.partial(ctx.call("sum", args.clone(), false, filter.clone())?);
                let c = self.partial(ctx.call("count", args, false, filter)?);
                let total = self.merge(ctx.call("sum", vec![cast(s, DataType::Float64)], false, None)?);
                let count = self.merge(ctx.call("sum", vec![c], false, None)?);
                when(count.clone().gt(lit(0i64)), total / cast(count, DataType::Float64)).end()?
            }
            other => match Statistic::of_aggregate(other) {
                Some(_) if distinct => {
                    return Err(unsupported(format!(
                        "{other}(DISTINCT …) is not supported over federated data"
                    )))
                }
                Some(statistic) => self.moments(ctx, statistic, args, filter)?,
                None => return Err(refusal_for(other)),
            },
        };
        self.finals.push(final_expr);
        let protection = self.protection(ctx, &name, &params.args, filter_of(expr))?;
        self.protections.push(protection);
        Ok(())
    }

    /// The hidden support (and, for models, pair count) disclosure control judges an aggregate by.
    fn protection(
        &mut self,
        ctx: &Context,
        name: &str,
        args: &[Expr],
        filter: Option<Box<Expr>>,
    ) -> Result<Protection> {
        // What a sum or mean is built from: the records that contribute a non-zero value, or for
        // a rate (the mean or sum of a 0/1 indicator) each of its classes, the ones and the
        // zeros. Other statistics are built from every record of the group.
        let summed = match (name, args) {
            ("sum" | "avg", [arg]) => Some(arg),
            _ => None,
        };
        let indicator = summed.is_some_and(is_indicator);
        let classes = match summed {
            Some(arg) if indicator => vec![arg.clone().not_eq(lit(0i64)), arg.clone().eq(lit(0i64))],
            Some(arg) => vec![arg.clone().not_eq(lit(0i64))],
            None => Vec::new(),
        };
        // The support is the smallest class (a sum of a 0/1 indicator is a count in disguise,
        // judged by how many records it counts).
        let mut class_counts = Vec::new();
        for class in &classes {
            let only = match filter.clone() {
                Some(f) => f.and(class.clone()),
                None => class.clone(),
            };
            let counted = summed.cloned().unwrap_or_else(|| lit(1i64));
            let rows = self.partial(ctx.call("count", vec![counted], false, Some(Box::new(only)))?);
            class_counts.push(self.merge(ctx.call("sum", vec![rows], false, None)?));
        }
        let support = match class_counts.as_slice() {
            [] => {
                let rows = self.partial(ctx.call("count", vec![lit(1i64)], false, filter.clone())?);
                self.merge(ctx.call("sum", vec![rows], false, None)?)
            }
            [only] => only.clone(),
            [ones, zeros, ..] => when(ones.clone().lt(zeros.clone()), ones.clone()).otherwise(zeros.clone())?,
        };
        // A sum of a 0/1 indicator (or of the constant 1) counts records.
        let counts_records = indicator || summed.is_some_and(is_zero_or_one);
        let statistic = Statistic::of_aggregate(name);
        let kind = match (name, statistic) {
            ("count", _) | (_, Some(Statistic::RegrCount)) => ProtectKind::Count,
            // … and is rounded like a count.
            ("sum", _) if counts_records => ProtectKind::Count,
            (_, Some(s)) if s.is_model() => ProtectKind::Model,
            _ => ProtectKind::Statistic,
        };
        let pairs = match (kind, args) {
            (ProtectKind::Model, [a, b]) => {
                let p = self.partial(ctx.call("regr_count", vec![a.clone(), b.clone()], false, filter.clone())?);
                Some(self.merge(ctx.call("sum", vec![p], false, None)?))
            }
            _ => None,
        };
        let dominance = match summed {
            Some(arg) if !indicator => self.dominance(ctx, name, arg, filter.clone())?,
            _ => None,
        };
        let kind = match dominance {
            Some(_) => ProtectKind::Magnitude,
            None => kind,
        };
        // Differencing is checked on the same records as the support (a constant's on all).
        let filter = filter.map(|f| *f);
        let populations = match summed {
            Some(arg) if !is_zero_or_one(arg) => classes
                .into_iter()
                .map(|class| conjunction(filter.clone().into_iter().chain([class])))
                .collect(),
            _ => {
                let not_null = args
                    .iter()
                    .filter(|a| !matches!(strip_alias(a), Expr::Literal(..)))
                    .filter(|a| a.nullable(ctx.input_schema).unwrap_or(true))
                    .map(|a| a.clone().is_not_null());
                vec![conjunction(filter.clone().into_iter().chain(not_null))]
            }
        };
        let measure = match summed {
            _ if kind == ProtectKind::Count || counts_records => Measure::Records,
            Some(arg) => Measure::Sum(arg.clone()),
            None => Measure::Other(
                Statistic::of_aggregate(name).map_or(name, |_| "moments").to_string(),
                args.to_vec(),
            ),
        };
        Ok(Protection {
            kind,
            support,
            pairs,
            dominance,
            populations,
            measure,
        })
    }

    /// The two largest contributions and the total of a sum or mean of a sensitive measure.
    fn dominance(
        &mut self,
        ctx: &Context,
        name: &str,
        arg: &Expr,
        filter: Option<Box<Expr>>,
    ) -> Result<Option<(Expr, Expr)>> {
        let Some(measure) = arg.column_refs().into_iter().find(|c| ctx.sensitive.contains(&c.name)) else {
            return Ok(None);
        };
        if ctx.dominance != Dominance::Off && !proportional(arg, ctx.sensitive) {
            return Err(unsupported(format!(
                "{name}({arg}) is not supported: a sum or mean of a sensitive measure ({measure}) may only scale it by a \
                 positive constant or pick records with CASE WHEN … THEN {measure} ELSE 0 END, so that its largest \
                 contributions can be checked",
                measure = measure.name
            )));
        }
        match ctx.dominance {
            Dominance::Off => Ok(None),
            Dominance::NoCredentials => Err(unsupported(format!(
                "{name}({measure}) needs the dominance check ({measure} is a sensitive measure), and trusts send \
                 the largest contributions only to an authenticated coordinator: set coordinator_token in \
                 [federation] of federation.toml",
                measure = measure.name
            ))),
            Dominance::On => {
                let top2 = Expr::AggregateFunction(AggregateFunction::new_udf(
                    Top2::udaf(),
                    vec![arg.clone()],
                    false,
                    filter.clone(),
                    vec![],
                    None,
                ));
                let top2 = self.partial(top2);
                let top2 = self.merge(Expr::AggregateFunction(AggregateFunction::new_udf(
                    Top2::udaf(),
                    vec![top2],
                    false,
                    None,
                    vec![],
                    None,
                )));
                let total = self.partial(ctx.call("sum", vec![arg.clone()], false, filter)?);
                let total = self.merge(ctx.call("sum", vec![total], false, None)?);
                Ok(Some((top2, total)))
            }
        }
    }

    /// Second moments: each trust sends count, means and co-moments; the centre merges them exactly.
    fn moments(
        &mut self,
        ctx: &Context,
        statistic: Statistic,
        args: Vec<Expr>,
        filter: Option<Box<Expr>>,
    ) -> Result<Expr> {
        // regr_*(y, x) takes y first; covar/corr(x, y) take x first; variance has one argument.
        let (y, x) = match (statistic.is_univariate(), statistic.takes_y_first(), args.as_slice()) {
            (true, _, [x]) => (x.clone(), x.clone()),
            (false, true, [y, x]) => (y.clone(), x.clone()),
            (false, false, [x, y]) => (y.clone(), x.clone()),
            _ => return Err(unsupported(format!("wrong number of arguments for {statistic:?}"))),
        };
        let mut part = |name: &str| -> Result<Expr> {
            let call = ctx.call(name, vec![y.clone(), x.clone()], false, filter.clone())?;
            Ok(cast(self.partial(call), DataType::Float64))
        };
        let n = part("regr_count")?;
        let mean_x = part("regr_avgx")?;
        let sxx = part("regr_sxx")?;
        let (mean_y, syy, sxy) = if statistic.is_univariate() {
            (mean_x.clone(), sxx.clone(), sxx.clone())
        } else {
            (part("regr_avgy")?, part("regr_syy")?, part("regr_sxy")?)
        };
        let merge = Expr::AggregateFunction(AggregateFunction::new_udf(
            MergeMoments::udaf(statistic),
            vec![n, mean_x, mean_y, sxx, syy, sxy],
            false,
            None,
            vec![],
            None,
        ));
        Ok(self.merge(merge))
    }
}

/// Whether `expr` can only be 0 or 1: `CASE WHEN … THEN 1 [ELSE 0] END` and the like.
fn is_indicator(expr: &Expr) -> bool {
    match strip_alias(expr) {
        Expr::Case(case) => {
            case.when_then_expr.iter().all(|(_, then)| is_zero_or_one(then))
                && case.else_expr.as_ref().is_none_or(|e| is_zero_or_one(e))
        }
        Expr::Cast(cast) => is_indicator(&cast.expr),
        _ => false,
    }
}

/// The value of a numeric literal (`None` for anything else, NULL included).
fn literal_number(expr: &Expr) -> Option<f64> {
    use datafusion::common::ScalarValue;
    match strip_alias(expr) {
        Expr::Literal(value, _) => match value.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(v)) => v,
            _ => None,
        },
        _ => None,
    }
}

/// Whether `expr` is the literal 0 or 1.
fn is_zero_or_one(expr: &Expr) -> bool {
    literal_number(expr).is_some_and(|v| v == 0.0 || v == 1.0)
}

/// Whether each record's value of `expr` is its sensitive measure times a positive constant, or
/// 0/NULL: then the largest values of `expr` are the largest contributions of the measure.
fn proportional(expr: &Expr, sensitive: &BTreeSet<String>) -> bool {
    use datafusion::logical_expr::Operator;
    let positive = |e: &Expr| literal_number(e).is_some_and(|v| v > 0.0 && v.is_finite());
    let nothing = |e: &Expr| {
        matches!(strip_alias(e), Expr::Literal(value, _) if value.is_null()) || literal_number(e) == Some(0.0)
    };
    let branch = |e: &Expr| nothing(e) || proportional(e, sensitive);
    match strip_alias(expr) {
        Expr::Column(c) => sensitive.contains(&c.name),
        Expr::Cast(c) => proportional(&c.expr, sensitive),
        Expr::TryCast(c) => proportional(&c.expr, sensitive),
        Expr::BinaryExpr(b) => match b.op {
            Operator::Multiply => {
                (proportional(&b.left, sensitive) && positive(&b.right))
                    || (positive(&b.left) && proportional(&b.right, sensitive))
            }
            Operator::Divide => proportional(&b.left, sensitive) && positive(&b.right),
            _ => false,
        },
        Expr::Case(case) => {
            case.when_then_expr.iter().all(|(_, then)| branch(then))
                && case.else_expr.as_ref().is_none_or(|e| branch(e))
        }
        _ => false,
    }
}

fn filter_of(expr: &Expr) -> Option<Box<Expr>> {
    match strip_alias(expr) {
        Expr::AggregateFunction(f) => f.params.filter.clone(),
        _ => None,
    }
}

fn position_or_push(exprs: &mut Vec<Expr>, expr: Expr) -> usize {
    match exprs.iter().position(|e| *e == expr) {
        Some(k) => k,
        None => {
            exprs.push(expr);
            exprs.len() - 1
        }
    }
}

/// The identifier column `expr` is, if it is one.
fn identifier_of(expr: &Expr, identifiers: &BTreeSet<String>) -> Option<String> {
    match strip_alias(expr) {
        Expr::Column(c) if identifiers.contains(&c.name) => Some(c.name.clone()),
        Expr::Cast(c) => identifier_of(&c.expr, identifiers),
        _ => None,
    }
}

/// The error for an aggregate Tessera cannot split, naming the supported alternative.
fn refusal_for(name: &str) -> DataFusionError {
    unsupported(match name {
        "median"
        | "percentile_cont"
        | "approx_median"
        | "approx_percentile_cont"
        | "approx_percentile_cont_with_weight" => {
            format!(
                "{name} is not supported over federated data yet: exact percentiles cannot be merged from per-trust \
                 answers (mergeable sketches are planned). Use avg(…) and stddev(…), or count(*) by a banded value"
            )
        }
        "approx_distinct" => {
            "approx_distinct is not supported over federated data yet (mergeable sketches are planned); \
                              use count(DISTINCT …) on a dimension"
                .to_string()
        }
        "array_agg" | "string_agg" | "first_value" | "last_value" | "nth_value" | "any_value" => format!(
            "{name} would release individual values, so it is not available over federated data; use count(*) or \
             another aggregate"
        ),
        "grouping" => "grouping() is not supported over federated data".to_string(),
        other => format!(
            "aggregate function {other} is not supported over federated data (supported: count, sum, avg, min, max, \
             var/stddev, covar/corr, regr_*, bool_and/bool_or, count(DISTINCT dimension))"
        ),
    })
}
