//! What a differentially private answer computes: the fragment's aggregate with each person's
//! records bounded and each summed measure clamped to its contract's bounds, and for each
//! statistic how far one person can move it (its sensitivity).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{cast, lit, when, Aggregate, Expr, LogicalPlan, Projection};
use tessera_policy::cells::{lineage, Lineage};

use super::bounds;
use tessera_policy::Refusal;
use tessera_schemas::{Contract, Role};

/// One statistic of the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Statistic {
    /// A number of records (`count(*)`, `count(x)`, with or without FILTER).
    Count,
    /// A sum of an expression each record's value is clamped to `[low, high]` and rounded to
    /// whole multiples of `unit` (a power of ten, 1 unless the values are too large for the
    /// sampler's integers, as sums of squares of costs are).
    Sum { of: String, low: f64, high: f64, unit: i64 },
}

/// Largest magnitude, in units, a record adds to a sum: the unit grows by tens beyond it.
const MAX_UNITS_PER_RECORD: f64 = 1e6;

/// The coarsest unit is 10^12: a record's value beyond 10^18 is refused (clamp it).
const MAX_UNIT_EXPONENT: f64 = 12.0;

impl Statistic {
    /// How much one person (at most `records` records) can change this statistic over the
    /// whole grid, in L2 norm and in the statistic's units: each record moves one cell by at
    /// most its largest value.
    pub fn sensitivity(&self, records: u64) -> f64 {
        let per_record = match self {
            Statistic::Count => 1.0,
            Statistic::Sum { low, high, unit, .. } => (low.abs().max(high.abs()) / *unit as f64).ceil().max(1.0),
        };
        records as f64 * per_record
    }

    /// What one unit of the released statistic is worth.
    pub fn unit(&self) -> i64 {
        match self {
            Statistic::Count => 1,
            Statistic::Sum { unit, .. } => *unit,
        }
    }

    /// For refusals, e.g. `a sum of apc_episodes.cost_gbp clamped to [0, 250000]`.
    pub fn describe(&self) -> String {
        match self {
            Statistic::Count => "a count".to_string(),
            Statistic::Sum { of, low, high, .. } => format!("a sum of {of} clamped to [{low}, {high}]"),
        }
    }
}

/// The plan a private answer runs, and what it needs to make the grid and the noise.
#[derive(Debug)]
pub struct PrivatePlan {
    /// The aggregate, rewritten: contributions bounded, measures clamped. Its output is the
    /// group keys, then the statistics.
    pub aggregate: LogicalPlan,
    /// The aggregate's group expressions and where its input comes from (for the grid).
    pub groups: Vec<Expr>,
    pub lineage: Lineage,
    /// The aggregate's input schema (group expressions refer to it).
    pub input: LogicalPlan,
    pub statistics: Vec<Statistic>,
    /// The fragment's aggregate output types, which the released values take.
    pub types: Vec<DataType>,
    /// Whether each may be NULL, as the fragment's schema says (the answer's schema says the same).
    pub nullable: Vec<bool>,
    /// For each answer column, the aggregate output column it is (the fragment's renames).
    pub output: Vec<(usize, String)>,
}

impl PrivatePlan {
    /// Adds a count of each cell's records after the statistics, for selecting cells by a noisy
    /// threshold (never released as such).
    pub fn count_records(&mut self) -> Result<(), Refusal> {
        let LogicalPlan::Aggregate(aggregate) = &self.aggregate else {
            return Err(Refusal::new("a private plan is an aggregate"));
        };
        let mut aggr_expr = aggregate.aggr_expr.clone();
        aggr_expr.push(datafusion::functions_aggregate::expr_fn::count(lit(1i64)).alias(RECORDS));
        let counted = Aggregate::try_new(aggregate.input.clone(), aggregate.group_expr.clone(), aggr_expr)
            .map_err(|e| Refusal::new(format!("cannot count the cells' records: {e}")))?;
        // Cells are selected on the premise that one person is in at most `records` of them.
        self.aggregate = super::cap::count_records_only(LogicalPlan::Aggregate(counted))
            .map_err(|e| Refusal::new(format!("cannot count the cells' records: {e}")))?;
        Ok(())
    }
}

/// Name of the count of records a noisy threshold selects cells by (never in an answer).
const RECORDS: &str = "__tessera_records_in_cell";

/// Splits a checked fragment into its aggregate over person data and the renames above it;
/// `None` when it reads no person data (organisational tables are answered exactly).
pub fn private_plan(
    plan: &LogicalPlan,
    contracts: &BTreeMap<String, Contract>,
    records_per_person: u64,
) -> Result<Option<PrivatePlan>, Refusal> {
    let (aggregate, output) = split(plan)?;
    let lineage = lineage(&aggregate.input)?;
    let people = |t: &String| contracts.get(t).is_some_and(|c| c.identifiers().next().is_some());
    if !lineage.tables.iter().any(people) {
        return Ok(None);
    }
    let schema = aggregate.input.schema().clone();
    let preserver = NamePreserver::new_for_projection();
    let mut statistics = Vec::new();
    let mut aggr_expr = Vec::new();
    for expr in &aggregate.aggr_expr {
        let saved = preserver.save(expr);
        let resolve = |e: &Expr| tessera_policy::cells::resolve(e, &schema, &lineage.defs);
        let (statistic, rewritten) = statistic(expr, &resolve, contracts)?;
        statistics.push(statistic);
        aggr_expr.push(saved.restore(rewritten));
    }
    if aggregate.group_expr.iter().any(|g| matches!(g, Expr::GroupingSet(_))) {
        // A record would be in one cell of each set: the coordinator rolls the finest cells up.
        return Err(Refusal::new(
            "with differential privacy a trust answers one grouping of cells; ROLLUP, CUBE and GROUPING SETS are made from it at the coordinator",
        ));
    }
    let input = super::contributions::bound_contributions(
        aggregate.input.as_ref().clone(),
        &aggregate.group_expr,
        contracts,
        records_per_person,
    )?;
    let rewritten = Aggregate::try_new(Arc::new(input), aggregate.group_expr.clone(), aggr_expr)
        .map_err(|e| Refusal::new(format!("cannot bound the question's contributions: {e}")))?;
    Ok(Some(PrivatePlan {
        aggregate: LogicalPlan::Aggregate(rewritten),
        groups: aggregate.group_expr.clone(),
        lineage,
        input: aggregate.input.as_ref().clone(),
        statistics,
        types: aggregate
            .schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect(),
        nullable: aggregate.schema.fields().iter().map(|f| f.is_nullable()).collect(),
        output,
    }))
}

/// Per answer column, the aggregate column it is and its name.
type Renames = Vec<(usize, String)>;

/// The fragment's aggregate and, per answer column, the aggregate column it renames.
fn split(plan: &LogicalPlan) -> Result<(&Aggregate, Renames), Refusal> {
    let shape = || {
        Refusal::new(
            "with differential privacy a trust answers one aggregate (SELECT keys, count(…), sum(…) FROM … GROUP BY keys); ORDER BY, HAVING, LIMIT and outer queries run at the coordinator",
        )
    };
    match plan {
        LogicalPlan::Aggregate(a) => {
            let output = a
                .schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (i, f.name().clone()))
                .collect();
            Ok((a, output))
        }
        LogicalPlan::Projection(Projection {
            expr, input, schema, ..
        }) => {
            let LogicalPlan::Aggregate(a) = input.as_ref() else {
                return Err(shape());
            };
            let mut output = Vec::new();
            for (e, field) in expr.iter().zip(schema.fields()) {
                let Expr::Column(c) = tessera_policy::strip_alias(e) else {
                    return Err(shape());
                };
                let index = a.schema.index_of_column(c).map_err(|_| shape())?;
                output.push((index, field.name().clone()));
            }
            Ok((a, output))
        }
        _ => Err(shape()),
    }
}

/// Classifies one aggregate expression and gives it with its measure clamped.
fn statistic(
    expr: &Expr,
    resolve: &dyn Fn(&Expr) -> Result<Expr, Refusal>,
    contracts: &BTreeMap<String, Contract>,
) -> Result<(Statistic, Expr), Refusal> {
    let refused = |what: &str| {
        Refusal::new(format!(
            "with differential privacy a trust answers counts and sums of measures; {what} is not one (ask for count(…), sum(measure) or avg(measure))"
        ))
    };
    let Expr::AggregateFunction(f) = tessera_policy::strip_alias(expr) else {
        return Err(refused(&expr.to_string()));
    };
    let name = f.func.name();
    if name.starts_with("tessera_") {
        // The cell key method's partials: the coordinator is not in this trust's mode.
        return Err(Refusal::new(
            "this trust answers with differential privacy, and the coordinator asked for what the cell key method \
             needs; its operator must set [disclosure] mode = \"dp\" in federation.toml",
        ));
    }
    if f.params.distinct {
        return Err(refused(&format!("{name}(DISTINCT …)")));
    }
    match (name, f.params.args.as_slice()) {
        ("count", _) => Ok((Statistic::Count, expr.clone())),
        ("sum", [arg]) => {
            let resolved = resolve(arg)?;
            let measure = |table: &str, column: &str| {
                let info = contracts.get(table)?.column(column)?;
                (info.role == Role::Measure).then_some(info.bounds).flatten()
            };
            let range = bounds::interval(&resolved, &measure).ok_or_else(|| {
                refused(&format!(
                    "sum({arg}) (a sum needs public bounds for each record's value: measures with contract bounds, \
                     constants, casts, + − ×, CASE, least/greatest)"
                ))
            })?;
            let (low, high) = (range.low.floor(), range.high.ceil());
            let magnitude = low.abs().max(high.abs()).max(1.0);
            let exponent = (magnitude / MAX_UNITS_PER_RECORD).log10().ceil().max(0.0);
            if exponent > MAX_UNIT_EXPONENT {
                return Err(Refusal::new(format!(
                    "sum({arg}): one record's value may be as large as {magnitude:e}, too large to sum with calibrated \
                     noise; clamp it (e.g. least(…, limit))"
                )));
            }
            let unit = 10i64.pow(exponent as u32);
            // Summed in Float64 whatever the argument's type (a cast back could fail on a
            // record); the answer is given in the type the coordinator expects.
            let mut value = clamp(arg.clone(), low, high);
            if unit > 1 {
                value = datafusion::functions::math::expr_fn::round(vec![value / lit(unit as f64)]);
            }
            let mut call = f.clone();
            call.params.args = vec![value];
            let statistic = Statistic::Sum {
                of: resolved.to_string(),
                low,
                high,
                unit,
            };
            Ok((statistic, Expr::AggregateFunction(AggregateFunction { ..call })))
        }
        _ => Err(refused(&format!("{name}(…)"))),
    }
}

/// `round(min(max(x, low), high))` in Float64. NULL stays NULL (it is not summed), and so does
/// NaN, which no comparison would clamp and which would make the whole sum NaN.
fn clamp(arg: Expr, low: f64, high: f64) -> Expr {
    let x = cast(arg, DataType::Float64);
    let clamped = when(
        datafusion::functions::math::expr_fn::isnan(x.clone()),
        lit(ScalarValue::Float64(None)),
    )
    .when(x.clone().lt(lit(low)), lit(low))
    .when(x.clone().gt(lit(high)), lit(high))
    .otherwise(x)
    .expect("a CASE with branches");
    datafusion::functions::math::expr_fn::round(vec![clamped])
}
