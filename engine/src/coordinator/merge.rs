//! The central merge of one federated aggregate, and disclosure control around every merged
//! value: rows of too few records are dropped (labels included) before anything else sees them,
//! and every statistic of a kept row passes its protecting function.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::metadata::FieldMetadata;
use datafusion::common::Column;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{cast, lit, Aggregate, Expr, Filter, LogicalPlan, Projection, ScalarUDF};

use datafusion::functions::math::expr_fn::round;

use super::decompose::{Decomposition, Protection};
use super::rewrite::Rewriter;
use super::scan::FederatedScan;
use crate::disclosure::{DisclosureConfig, Judged, Ledger, ProtectKind, ProtectUdf};

/// Field metadata key of a released statistic's status: `perturbed`, `rounded` or `exact`.
pub const STATUS_METADATA: &str = "tessera.status";

impl Rewriter<'_> {
    /// The central merge over the partial answers, shaped exactly like the original aggregate.
    pub(super) fn merge(
        &self,
        aggregate: &Aggregate,
        parts: Decomposition,
        scan: LogicalPlan,
        protect: bool,
    ) -> Result<LogicalPlan> {
        let body = fragment_body(&scan);
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
        // Each released statistic says how it was released (`tessera.status`), for clients to mark.
        let status = self.disclosure.as_ref().filter(|_| protect).map(|(config, _)| {
            let kinds = parts.protections.iter().map(|p| p.as_ref().map(|p| p.kind));
            kinds
                .map(|kind| match kind {
                    _ if config.perturbs() => "perturbed",
                    Some(ProtectKind::Count) if config.round_to > 1 => "rounded",
                    _ => "exact",
                })
                .collect::<Vec<_>>()
        });
        let (input, finals) = match self.disclosure.as_ref().filter(|_| protect) {
            Some((config, ledger)) => {
                // A row of fewer than `threshold` records is not released at all, labels included:
                // nothing above it can tell an empty group from a small one.
                let rows = parts.rows.ok_or_else(|| {
                    DataFusionError::Internal("the rows of a protected aggregate are not counted".into())
                })?;
                ledger.about_people.store(true, std::sync::atomic::Ordering::Relaxed);
                // Each set of records the aggregate releases statistics about counts against the
                // question's limit.
                let mut sets = ledger.sets.lock().unwrap_or_else(|p| p.into_inner());
                sets.extend(parts.populations.iter().map(|class| set_name(&body, class)));
                drop(sets);
                let kept = Filter::try_new(rows.gt_eq(lit(config.threshold as i64)), Arc::new(merged))?;
                let finals = parts
                    .finals
                    .into_iter()
                    .zip(parts.protections)
                    .map(|(value, protection)| {
                        let protection = protection.ok_or_else(|| {
                            DataFusionError::Internal("a protected aggregate's statistic has no protection".into())
                        })?;
                        protect_value(value, protection, config, ledger, &body, &group_cols)
                    })
                    .collect::<Result<Vec<_>>>()?;
                (LogicalPlan::Filter(kept), finals)
            }
            None => (merged, parts.finals),
        };
        let groups = group_cols.len();
        let outputs = group_cols.into_iter().chain(finals);
        let projection = outputs
            .zip(aggregate.schema.iter())
            .enumerate()
            .map(|(i, (expr, (qualifier, field)))| {
                // A perturbed sum of whole numbers is rounded back to a whole number.
                let expr = match field.data_type().is_integer() {
                    true => round(vec![expr]),
                    false => expr,
                };
                let metadata = i
                    .checked_sub(groups)
                    .and_then(|k| status.as_ref()?.get(k))
                    .map(|s| FieldMetadata::from(BTreeMap::from([(STATUS_METADATA.to_string(), s.to_string())])));
                cast(expr, field.data_type().clone()).alias_qualified_with_metadata(
                    qualifier.cloned(),
                    field.name(),
                    metadata,
                )
            })
            .collect::<Vec<_>>();
        Ok(LogicalPlan::Projection(Projection::try_new(
            projection,
            Arc::new(input),
        )?))
    }
}

/// One statistic's released value: its protecting function over the merged value and the
/// hidden columns it is judged by, noting each released value by its set of records (the
/// fragment's `body` and the statistic's class) and its cell's labels.
fn protect_value(
    value: Expr,
    p: Protection,
    config: &DisclosureConfig,
    ledger: &Arc<Ledger>,
    body: &str,
    group_cols: &[Expr],
) -> Result<Expr> {
    let call = |kind, judged, set: &str, args: Vec<Expr>| {
        let udf = ProtectUdf::new(kind, judged, config, ledger.clone()).noting(&set_name(body, set), group_cols.len());
        let args = args.into_iter().chain(group_cols.iter().cloned()).collect();
        Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(ScalarUDF::from(udf)), args))
    };
    if let Some(classes) = p.classes {
        // A sum or mean of classes is released from each class's protected count, so a
        // count in disguise (`sum(3)`, a sum of an indicator) is protected as the count it is.
        let judged = Judged {
            perturbed: !classes.keys.is_empty(),
            ..Judged::default()
        };
        let mut total = lit(0.0f64);
        let mut records = lit(0.0f64);
        for (k, (v, count)) in classes.values.iter().zip(classes.counts).enumerate() {
            let args = [count.clone(), count]
                .into_iter()
                .chain(classes.keys.get(k).cloned())
                .collect();
            let set = p.sets.get(k).map_or("", String::as_str);
            let protected = cast(call(ProtectKind::Count, judged, set, args), DataType::Float64);
            total = total + lit(*v) * protected.clone();
            records = records + protected;
        }
        return Ok(if classes.mean { total / records } else { total });
    }
    let args = std::iter::once(value)
        .chain(std::iter::once(p.support))
        .chain(p.pairs)
        .chain(p.magnitude.into_iter().flat_map(|(top2, total)| [top2, total]))
        .chain(p.key)
        .chain(p.records.into_iter().flat_map(|(n, key)| [n, key]))
        .collect();
    let set = p.sets.first().map_or("", String::as_str);
    Ok(call(p.kind, p.judged, set, args))
}

/// A set of records: the fragment's tables, filter and grouping (`body`) with a statistic's class.
fn set_name(body: &str, class: &str) -> String {
    format!("{body} | {class}")
}

/// The part of a fragment's SQL that says which records it reads and how it groups them (from
/// `FROM` on).
fn fragment_body(scan: &LogicalPlan) -> String {
    let LogicalPlan::Extension(extension) = scan else {
        return String::new();
    };
    match extension.node.as_any().downcast_ref::<FederatedScan>() {
        Some(scan) => scan
            .sql
            .find(" FROM ")
            .map_or(scan.sql.clone(), |at| scan.sql[at + 1..].to_string()),
        None => String::new(),
    }
}
