//! What a differentially private answer computes: the fragment's aggregate with each person's
//! records bounded and each summed measure clamped to its contract's bounds, and for each
//! statistic how far one person can move it (its sensitivity).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    cast, col, lit, when, Aggregate, Expr, ExprFunctionExt, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Projection,
};
use tessera_policy::cells::{lineage, Lineage};
use tessera_policy::Refusal;
use tessera_schemas::{Contract, Role};

/// Name of the bounding window's row number (never in an answer).
const ROW_NUMBER: &str = "__tessera_record_of_person";

/// One statistic of the answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Statistic {
    /// A number of records (`count(*)`, `count(x)`, with or without FILTER).
    Count,
    /// A sum of a measure clamped to `[low, high]` and rounded to whole units.
    Sum { measure: String, low: f64, high: f64 },
}

impl Statistic {
    /// How much one person (at most `records` records) can change this statistic over the
    /// whole grid, in L2 norm: each record moves one cell by at most its largest value.
    pub fn sensitivity(&self, records: u64) -> f64 {
        let per_record = match self {
            Statistic::Count => 1.0,
            Statistic::Sum { low, high, .. } => low.abs().max(high.abs()).max(1.0),
        };
        records as f64 * per_record
    }

    /// For the answer's footer, e.g. `sum(cost_gbp) clamped to [0, 250000]`.
    pub fn describe(&self) -> String {
        match self {
            Statistic::Count => "a count".to_string(),
            Statistic::Sum { measure, low, high } => format!("a sum of {measure} clamped to [{low}, {high}]"),
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
    /// For each answer column, the aggregate output column it is (the fragment's renames).
    pub output: Vec<(usize, String)>,
}

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
        let (statistic, rewritten) = statistic(expr, &resolve, &schema, contracts)?;
        statistics.push(statistic);
        aggr_expr.push(saved.restore(rewritten));
    }
    let input = bound_contributions(aggregate.input.as_ref().clone(), contracts, records_per_person)?;
    let rewritten = Aggregate::try_new(Arc::new(input), aggregate.group_expr.clone(), aggr_expr)
        .map_err(|e| Refusal::new(format!("cannot bound the question's contributions: {e}")))?;
    Ok(Some(PrivatePlan {
        aggregate: LogicalPlan::Aggregate(rewritten),
        groups: aggregate.group_expr.clone(),
        lineage,
        input: aggregate.input.as_ref().clone(),
        statistics,
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
    schema: &DFSchema,
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
    if f.params.distinct {
        return Err(refused(&format!("{name}(DISTINCT …)")));
    }
    match (name, f.params.args.as_slice()) {
        ("count", _) => Ok((Statistic::Count, expr.clone())),
        ("sum", [arg]) => {
            let (table, column) = measure_of(&resolve(arg)?).ok_or_else(|| refused(&format!("sum({arg})")))?;
            let contract = contracts.get(&table).ok_or_else(|| refused(&format!("sum({arg})")))?;
            let info = contract
                .column(&column)
                .filter(|c| c.role == Role::Measure)
                .ok_or_else(|| refused(&format!("sum({arg})")))?;
            let (low, high) = info.bounds.ok_or_else(|| {
                Refusal::new(format!(
                    "{column} has no public bounds in its contract, so its sum cannot be given calibrated noise"
                ))
            })?;
            // The clamped value keeps the measure's type, so the sum keeps the type the
            // coordinator expects.
            let data_type = arg
                .get_type(schema)
                .map_err(|e| Refusal::new(format!("cannot type sum({arg}): {e}")))?;
            let mut call = f.clone();
            call.params.args = vec![cast(clamp(arg.clone(), low, high), data_type)];
            let statistic = Statistic::Sum {
                measure: column,
                low,
                high,
            };
            Ok((statistic, Expr::AggregateFunction(AggregateFunction { ..call })))
        }
        _ => Err(refused(&format!("{name}(…)"))),
    }
}

/// The base column a statistic's argument is, through casts only.
fn measure_of(expr: &Expr) -> Option<(String, String)> {
    match expr {
        Expr::Cast(c) => measure_of(&c.expr),
        Expr::TryCast(c) => measure_of(&c.expr),
        Expr::Column(Column {
            relation: Some(table),
            name,
            ..
        }) => Some((table.table().to_string(), name.clone())),
        _ => None,
    }
}

/// `round(min(max(x, low), high))` in Float64 (NULL stays NULL: it is not summed).
fn clamp(arg: Expr, low: f64, high: f64) -> Expr {
    let x = cast(arg, DataType::Float64);
    let clamped = when(x.clone().lt(lit(low)), lit(low))
        .when(x.clone().gt(lit(high)), lit(high))
        .otherwise(x)
        .expect("a CASE with branches");
    datafusion::functions::math::expr_fn::round(vec![clamped])
}

/// Keeps at most `records` records of each person in every scan of a table of people,
/// before any condition: adding or removing one person then changes at most `records` records
/// the question reads, whatever it asks.
fn bound_contributions(
    input: LogicalPlan,
    contracts: &BTreeMap<String, Contract>,
    records: u64,
) -> Result<LogicalPlan, Refusal> {
    let fail = |e: datafusion::error::DataFusionError| Refusal::new(format!("cannot bound contributions: {e}"));
    input
        .transform_up(|node| {
            let LogicalPlan::TableScan(scan) = &node else {
                return Ok(Transformed::no(node));
            };
            let Some(person) = contracts
                .get(scan.table_name.table())
                .and_then(|c| c.identifiers().next())
            else {
                return Ok(Transformed::no(node));
            };
            let qualifier = scan.table_name.clone();
            let columns = scan
                .projected_schema
                .fields()
                .iter()
                .map(|f| Expr::Column(Column::new(Some(qualifier.clone()), f.name())))
                .collect::<Vec<_>>();
            let number = row_number()
                .partition_by(vec![Expr::Column(Column::new(Some(qualifier.clone()), &person.name))])
                .build()?
                .alias(ROW_NUMBER);
            let bounded = LogicalPlanBuilder::from(node)
                .window(vec![number])?
                .filter(col(ROW_NUMBER).lt_eq(lit(ScalarValue::UInt64(Some(records)))))?
                .project(columns)?
                .build()?;
            Ok(Transformed::yes(bounded))
        })
        .map(|t| t.data)
        .map_err(fail)
}
