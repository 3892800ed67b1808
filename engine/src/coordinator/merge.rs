//! The central merge of one federated aggregate, and disclosure control around every merged
//! value: rows of too few records are dropped (labels included) before anything else sees them,
//! and every statistic of a kept row passes its protecting function.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{cast, lit, Aggregate, Expr, Filter, LogicalPlan, Projection, ScalarUDF};

use super::decompose::{Decomposition, Measure, Protection};
use super::population::population;
use super::rewrite::{Rewriter, Tracked, Variant};
use crate::disclosure::{CellGuard, DisclosureConfig, Ledger, ProtectKind, ProtectUdf};

impl Rewriter<'_> {
    /// The central merge over the partial answers, shaped exactly like the original aggregate.
    pub(super) fn merge(
        &self,
        aggregate: &Aggregate,
        parts: Decomposition,
        scan: LogicalPlan,
        protect: bool,
    ) -> Result<LogicalPlan> {
        let group_cols = (0..aggregate.group_expr.len())
            .map(|i| Expr::Column(Column::from_name(format!("g{i}"))))
            .collect::<Vec<_>>();
        let merges = parts
            .merges
            .into_iter()
            .enumerate()
            .map(|(k, e)| e.alias(format!("m{k}")))
            .collect::<Vec<_>>();
        let merged = LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(scan), group_cols.clone(), merges)?);
        let (input, finals) = match self.disclosure.as_ref().filter(|_| protect) {
            Some((config, ledger)) => {
                // A row of fewer than `threshold` records is not released at all, labels included:
                // nothing above it can tell an empty group from a small one.
                let rows = parts.rows.ok_or_else(|| {
                    DataFusionError::Internal("the rows of a protected aggregate are not counted".into())
                })?;
                let kept = Filter::try_new(rows.gt_eq(lit(config.threshold as i64)), Arc::new(merged))?;
                let finals = parts
                    .finals
                    .into_iter()
                    .zip(parts.protections)
                    .map(|(value, protection)| {
                        let protection = protection.ok_or_else(|| {
                            DataFusionError::Internal("a protected aggregate's statistic has no protection".into())
                        })?;
                        self.protect(aggregate, value, protection, config, ledger, &group_cols)
                    })
                    .collect::<Result<Vec<_>>>()?;
                (LogicalPlan::Filter(kept), finals)
            }
            None => (merged, parts.finals),
        };
        let outputs = group_cols.into_iter().chain(finals);
        let projection = outputs
            .zip(aggregate.schema.iter())
            .map(|(expr, (qualifier, field))| {
                cast(expr, field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name())
            })
            .collect::<Vec<_>>();
        Ok(LogicalPlan::Projection(Projection::try_new(
            projection,
            Arc::new(input),
        )?))
    }

    /// One statistic's released value: its protecting function over the merged value and the
    /// hidden columns it is judged by.
    fn protect(
        &self,
        aggregate: &Aggregate,
        value: Expr,
        p: Protection,
        config: &DisclosureConfig,
        ledger: &Arc<Ledger>,
        group_cols: &[Expr],
    ) -> Result<Expr> {
        let guards = self.guards(aggregate, &p.populations, &p.measure)?;
        let call = |kind, guards: Vec<Arc<CellGuard>>, args: Vec<Expr>| {
            let keys = if guards.is_empty() {
                Vec::new()
            } else {
                group_cols.to_vec()
            };
            let udf = ScalarUDF::from(ProtectUdf::new(kind, config, ledger.clone()).with_guards(guards));
            Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(udf),
                args.into_iter().chain(keys).collect(),
            ))
        };
        if let Some(classes) = p.classes {
            // A sum or mean of classes is released from each class's protected count, so a
            // count in disguise (`sum(3)`, a sum of an indicator) is protected as the count it is.
            let mut total = lit(0.0f64);
            let mut records = lit(0.0f64);
            for (k, (v, count)) in classes.values.iter().zip(classes.counts).enumerate() {
                let guard = guards.get(k).cloned().into_iter().collect();
                let protected = cast(
                    call(ProtectKind::Count, guard, vec![count.clone(), count]),
                    DataType::Float64,
                );
                total = total + lit(*v) * protected.clone();
                records = records + protected;
            }
            return Ok(if classes.mean { total / records } else { total });
        }
        let args = std::iter::once(value)
            .chain(std::iter::once(p.support))
            .chain(p.pairs)
            .chain(p.dominance.into_iter().flat_map(|(top2, total)| [top2, total]))
            .collect();
        Ok(call(p.kind, guards, args))
    }

    /// The guards of a statistic of `aggregate` built from the records meeting each of
    /// `conditions` (shared with other statistics built from the same records); none when the
    /// aggregate's input is a join, which is not compared with other releases.
    fn guards(
        &self,
        aggregate: &Aggregate,
        conditions: &[Option<Expr>],
        measure: &Measure,
    ) -> Result<Vec<Arc<CellGuard>>> {
        let (quantity, args) = match measure {
            Measure::Records => ("records", Vec::new()),
            Measure::Sum(arg) => ("sum", vec![arg.clone()]),
            Measure::Other(name, args) => (name.as_str(), args.clone()),
        };
        // The quantity's arguments are written as SQL over the table like the conditions.
        let how_many = conditions.len();
        let exprs = conditions
            .iter()
            .cloned()
            .chain(args.into_iter().map(Some))
            .collect::<Vec<_>>();
        let Some((population, mut conditions)) = population(&aggregate.input, &aggregate.group_expr, &exprs)? else {
            return Ok(Vec::new());
        };
        let args = conditions.split_off(how_many);
        let measure = match args.is_empty() {
            true => quantity.to_string(),
            false => format!(
                "{quantity}({})",
                args.into_iter().flatten().collect::<Vec<_>>().join(", ")
            ),
        };
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        let family = match tracked.iter().position(|t| t.population == population) {
            Some(i) => i,
            None => {
                tracked.push(Tracked {
                    population,
                    variants: Vec::new(),
                });
                tracked.len() - 1
            }
        };
        let variants = &mut tracked[family].variants;
        let guards = conditions
            .into_iter()
            .map(|condition| {
                match variants
                    .iter()
                    .find(|v| v.condition == condition && v.measure == measure)
                {
                    Some(known) => known.guard.clone(),
                    None => {
                        let guard = Arc::new(CellGuard::default());
                        variants.push(Variant {
                            condition,
                            measure: measure.clone(),
                            guard: guard.clone(),
                        });
                        guard
                    }
                }
            })
            .collect();
        Ok(guards)
    }
}
