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
use datafusion::logical_expr::{cast, lit, when, Expr};
use std::collections::BTreeSet;

use super::moments::{MergeMoments, Statistic};
use crate::cells::{StatisticKind, StatisticShape};
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
    /// Per user aggregate, how disclosure control judges it (when it does).
    pub protections: Vec<Option<Protection>>,
    /// The merged number of records of each group (when disclosure control judges the rows).
    pub rows: Option<Expr>,
}

/// A sum or mean of a constant or of classes, released from each class's protected count.
#[derive(Debug, Clone)]
pub struct ClassStatistic {
    /// Each class's value.
    pub values: Vec<f64>,
    /// Each class's merged count.
    pub counts: Vec<Expr>,
    /// A mean (`Σ value × count / Σ count`) rather than a sum.
    pub mean: bool,
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
    /// For sums and means of constants or classes: the classes it is released from.
    pub classes: Option<ClassStatistic>,
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

    /// Counts each group's records, by which disclosure control keeps or withholds the row.
    pub fn count_rows(&mut self, ctx: &Context) -> Result<()> {
        let rows = self.partial(ctx.call("count", vec![lit(1i64)], false, None)?);
        self.rows = Some(self.merge(ctx.call("sum", vec![rows], false, None)?));
        Ok(())
    }

    /// Adds one user aggregate; `shape` says how disclosure control judges it (`None`: it does not).
    pub fn add(&mut self, ctx: &Context, expr: &Expr, shape: Option<&StatisticShape>) -> Result<()> {
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
        let protection = match shape {
            Some(shape) => Some(self.protection(ctx, &name, &params.args, filter_of(expr), shape)?),
            None => None,
        };
        self.protections.push(protection);
        Ok(())
    }

    /// The hidden class counts disclosure control judges a statistic by (see [`crate::cells`]).
    fn protection(
        &mut self,
        ctx: &Context,
        name: &str,
        args: &[Expr],
        filter: Option<Box<Expr>>,
        shape: &StatisticShape,
    ) -> Result<Protection> {
        // One count per class of records the statistic is built from.
        let populations = shape
            .classes
            .iter()
            .map(|class| {
                let class = (!is_true(class)).then(|| class.clone());
                conjunction(filter.iter().map(|f| (**f).clone()).chain(class))
            })
            .collect::<Vec<_>>();
        let mut counts = Vec::new();
        for population in &populations {
            let rows = self.partial(ctx.call("count", vec![lit(1i64)], false, population.clone().map(Box::new))?);
            counts.push(self.merge(ctx.call("sum", vec![rows], false, None)?));
        }
        // The support is the smallest class.
        let mut support = counts.first().cloned().unwrap_or_else(|| lit(0i64));
        for count in counts.iter().skip(1) {
            support = when(count.clone().lt(support.clone()), count.clone()).otherwise(support)?;
        }
        let sensitive_arg = match &shape.kind {
            StatisticKind::Magnitude { sensitive: Some(_) } | StatisticKind::Moments { sensitive: Some(_) } => {
                args.first()
            }
            _ => None,
        };
        let dominance = match sensitive_arg {
            Some(arg) => self.dominance(ctx, name, arg, filter.clone())?,
            None => None,
        };
        let kind = match (&shape.kind, &dominance) {
            (_, Some(_)) => ProtectKind::Magnitude,
            (StatisticKind::Count, _) => ProtectKind::Count,
            (StatisticKind::Model, _) => ProtectKind::Model,
            _ => ProtectKind::Statistic,
        };
        let classes = match &shape.kind {
            StatisticKind::Classes { values, mean } => Some(ClassStatistic {
                values: values.clone(),
                counts: counts.clone(),
                mean: *mean,
            }),
            _ => None,
        };
        let measure = match (&shape.kind, args) {
            (StatisticKind::Count | StatisticKind::Classes { .. }, _) => Measure::Records,
            (StatisticKind::Magnitude { .. }, [arg]) => Measure::Sum(arg.clone()),
            _ => Measure::Other(
                Statistic::of_aggregate(name).map_or(name, |_| "moments").to_string(),
                args.to_vec(),
            ),
        };
        Ok(Protection {
            kind,
            pairs: (kind == ProtectKind::Model).then(|| support.clone()),
            support,
            dominance,
            populations,
            measure,
            classes,
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

/// Whether `expr` is the literal `true` (a class of all records).
fn is_true(expr: &Expr) -> bool {
    matches!(
        strip_alias(expr),
        Expr::Literal(datafusion::common::ScalarValue::Boolean(Some(true)), _)
    )
}
