//! Splitting each aggregate into what a trust computes (partial) and how the centre merges it.
//!
//! | user asks | each trust returns | the centre computes |
//! |---|---|---|
//! | `count(x)`, `count(*)` | `count` | `sum` |
//! | `sum(x)` | `sum` | `sum` |
//! | `avg(x)` | `sum`, `count` | `sum / sum` |
//! | `min`, `max`, `bool_and`, `bool_or` | the same | the same |
//! | variance, stddev, covariance, corr, regr_* | `regr_count/avgx/avgy/sxx/syy/sxy` | Chan merge ([`crate::moments`]) |
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

use crate::moments::{MergeMoments, Statistic};
use tessera_disclosure::{CellKey, Judged, ProtectKind, Top2};
use tessera_policy::cells::{StatisticKind, StatisticShape};
use tessera_policy::{aggregate_call, strip_alias};

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
    /// Every set of records a statistic is released about, described by [`describe`].
    pub sets: Vec<String>,
}

/// A sum or mean of a constant or of classes, released from each class's protected count.
#[derive(Debug, Clone)]
pub struct ClassStatistic {
    /// Each class's value.
    pub values: Vec<f64>,
    /// Each class's merged count.
    pub counts: Vec<Expr>,
    /// Each class's cell key (when values are perturbed).
    pub keys: Vec<Expr>,
    /// A mean (`Σ value × count / Σ count`) rather than a sum.
    pub mean: bool,
}

/// What disclosure control needs about one merged aggregate.
#[derive(Debug, Clone)]
pub struct Protection {
    pub kind: ProtectKind,
    pub judged: Judged,
    /// Records in the smallest class the statistic is built from (see [`tessera_policy::cells`]).
    pub support: Expr,
    /// Pairs used by a model (correlation, covariance, regression), for residual df.
    pub pairs: Option<Expr>,
    /// For a sum or mean of a measure: its two largest contributions and its total.
    pub magnitude: Option<(Expr, Expr)>,
    /// The cell key of the statistic's records (when values are perturbed).
    pub key: Option<Expr>,
    /// For a mean of a measure: the records it averages over, and their cell key.
    pub records: Option<(Expr, Expr)>,
    /// For sums and means of constants or classes: the classes it is released from.
    pub classes: Option<ClassStatistic>,
    /// Each class's set of records, as text (the first is the one a single value is about).
    pub sets: Vec<String>,
}

/// Whether trusts send what disclosure control needs beyond counts: the largest contributions
/// (dominance, noise on sums) and cell keys (perturbation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dominance {
    /// Disclosure control needs neither.
    Off,
    /// Trusts send them: the coordinator proves its token.
    On,
    /// They are needed but the coordinator has no token, so trusts would not send them.
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
    /// Whether trusts send contributions and cell keys.
    pub dominance: Dominance,
    /// Whether the dominance rules are in force (for sensitive measures).
    pub dominance_rules: bool,
    /// The columns whose values make a record's key (every column of each table of people read),
    /// when values are perturbed.
    pub key_columns: Option<Vec<Expr>>,
    /// The aggregate's input schema (for the nullability of arguments).
    pub input_schema: &'a DFSchema,
    /// Trusts answer with differential privacy: statistics are built from noisy sums.
    pub private: bool,
}

fn column(name: String) -> Expr {
    Expr::Column(Column::from_name(name))
}

fn unsupported(message: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(message.into())
}

impl Context<'_> {
    pub(crate) fn call(&self, name: &str, args: Vec<Expr>, distinct: bool, filter: Option<Box<Expr>>) -> Result<Expr> {
        aggregate_call(self.state, name, args, distinct, filter)
    }
}

impl Decomposition {
    /// Column `p{k}` computing `expr` at each trust (shared when two aggregates need the same partial).
    pub(crate) fn partial(&mut self, expr: Expr) -> Expr {
        column(format!("p{}", position_or_push(&mut self.partials, expr)))
    }

    /// Column `m{k}` of the central merge (shared likewise).
    pub(crate) fn merge(&mut self, expr: Expr) -> Expr {
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
        self.sets.push(describe(&None));
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
                Some(statistic) if ctx.private => self.noisy_moments(ctx, statistic, args, filter)?,
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

    /// The hidden class counts (and cell keys) disclosure control judges a statistic by (see
    /// [`tessera_policy::cells`]).
    fn protection(
        &mut self,
        ctx: &Context,
        name: &str,
        args: &[Expr],
        filter: Option<Box<Expr>>,
        shape: &StatisticShape,
    ) -> Result<Protection> {
        let perturbed = ctx.key_columns.is_some();
        // One count (and key) per class of records the statistic is built from.
        // `x IS NOT NULL` of a column that is never NULL is every record: the same set, the same
        // partials and cell key as the group's own.
        let never_null =
            |e: &Expr| matches!(e, Expr::IsNotNull(inner) if !inner.nullable(ctx.input_schema).unwrap_or(true));
        let populations = shape
            .classes
            .iter()
            .map(|class| {
                let class = (!is_true(class) && !never_null(class)).then(|| class.clone());
                conjunction(filter.iter().map(|f| (**f).clone()).chain(class))
            })
            .collect::<Vec<_>>();
        let mut counts = Vec::new();
        let mut keys = Vec::new();
        for population in &populations {
            counts.push(self.records(ctx, population)?);
            if perturbed {
                keys.push(self.cell_key(ctx, population)?);
            }
        }
        // The support is the smallest class.
        let mut support = counts.first().cloned().unwrap_or_else(|| lit(0i64));
        for count in counts.iter().skip(1) {
            support = when(count.clone().lt(support.clone()), count.clone()).otherwise(support)?;
        }
        let sensitive = ctx.dominance_rules
            && matches!(
                shape.kind,
                StatisticKind::Magnitude { sensitive: Some(_) } | StatisticKind::Moments { sensitive: Some(_) }
            );
        let magnitude = match (&shape.kind, args) {
            (StatisticKind::Magnitude { .. }, [arg]) if perturbed || sensitive => {
                Some(self.contributions(ctx, name, arg, filter.clone())?)
            }
            (StatisticKind::Moments { .. }, [arg, ..]) if sensitive => {
                Some(self.contributions(ctx, name, arg, filter.clone())?)
            }
            _ => None,
        };
        let mean = name == "avg" && matches!(shape.kind, StatisticKind::Magnitude { .. });
        let records = match (mean && perturbed, args) {
            (true, [arg]) => {
                let not_null = Some(arg.clone().is_not_null()).filter(|c| !never_null(c));
                let population = conjunction(filter.iter().map(|f| (**f).clone()).chain(not_null));
                Some((self.records(ctx, &population)?, self.cell_key(ctx, &population)?))
            }
            _ => None,
        };
        let kind = match (&shape.kind, &magnitude) {
            (_, Some(_)) => ProtectKind::Magnitude,
            (StatisticKind::Count, _) => ProtectKind::Count,
            (StatisticKind::Model, _) => ProtectKind::Model,
            _ => ProtectKind::Statistic,
        };
        let classes = match &shape.kind {
            StatisticKind::Classes { values, mean } => Some(ClassStatistic {
                values: values.clone(),
                counts: counts.clone(),
                keys: keys.clone(),
                mean: *mean,
            }),
            _ => None,
        };
        let sets = populations.iter().map(describe).collect();
        Ok(Protection {
            sets,
            kind,
            judged: Judged {
                perturbed,
                sensitive,
                mean: mean && magnitude.is_some(),
                scaled: !matches!(shape.kind, StatisticKind::Magnitude { .. }),
            },
            pairs: (kind == ProtectKind::Model).then(|| support.clone()),
            support,
            magnitude,
            key: keys.into_iter().next(),
            records,
            classes,
        })
    }

    /// The merged number of records meeting `population` (all: `None`).
    fn records(&mut self, ctx: &Context, population: &Option<Expr>) -> Result<Expr> {
        let name = describe(population);
        if !self.sets.contains(&name) {
            self.sets.push(name);
        }
        let rows = self.partial(ctx.call("count", vec![lit(1i64)], false, population.clone().map(Box::new))?);
        Ok(self.merge(ctx.call("sum", vec![rows], false, None)?))
    }

    /// The merged cell key of the records meeting `population`.
    fn cell_key(&mut self, ctx: &Context, population: &Option<Expr>) -> Result<Expr> {
        if ctx.dominance == Dominance::NoCredentials {
            return Err(unsupported(
                "perturbation needs each cell's key, which trusts send only to the coordinator they recognise by \
                 its certificate: set [tls] (ca, cert, key) in federation.toml",
            ));
        }
        let columns = ctx
            .key_columns
            .clone()
            .ok_or_else(|| DataFusionError::Internal("no record-key columns".into()))?;
        let key = self.partial(Expr::AggregateFunction(AggregateFunction::new_udf(
            CellKey::udaf(None),
            columns,
            false,
            population.clone().map(Box::new),
            vec![],
            None,
        )));
        Ok(self.merge(Expr::AggregateFunction(AggregateFunction::new_udf(
            CellKey::merge_udaf(),
            vec![key],
            false,
            None,
            vec![],
            None,
        ))))
    }

    /// The two largest contributions and the total of a sum or mean of a measure.
    fn contributions(
        &mut self,
        ctx: &Context,
        name: &str,
        arg: &Expr,
        filter: Option<Box<Expr>>,
    ) -> Result<(Expr, Expr)> {
        if ctx.dominance == Dominance::NoCredentials {
            return Err(unsupported(format!(
                "{name}({arg}) needs its largest contributions (for the dominance rules and the noise on sums), and \
                 trusts send them only to the coordinator they recognise by its certificate: set [tls] (ca, cert, \
                 key) in federation.toml"
            )));
        }
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
        Ok((top2, total))
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

/// A set of records of a group, as text: its condition, or all records.
pub fn describe(population: &Option<Expr>) -> String {
    population
        .as_ref()
        .map_or_else(|| "all records".to_string(), |p| p.to_string())
}

/// Whether `expr` is the literal `true` (a class of all records).
fn is_true(expr: &Expr) -> bool {
    matches!(
        strip_alias(expr),
        Expr::Literal(datafusion::common::ScalarValue::Boolean(Some(true)), _)
    )
}
