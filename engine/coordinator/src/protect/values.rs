//! Protecting each merged value: the protecting function over it and the hidden columns it is
//! judged by, and the name of the set of records it is about.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{cast, lit, Expr, Filter, LogicalPlan, ScalarUDF};
use tessera_disclosure::{DisclosureConfig, Judged, Ledger, ProtectKind, ProtectUdf};

use crate::decompose::{Decomposition, Protection};
use crate::fanout::FederatedScan;

/// How each statistic of `parts` is released: `perturbed`, `rounded` or `exact`.
pub fn statuses(parts: &Decomposition, config: &DisclosureConfig) -> Vec<&'static str> {
    parts
        .protections
        .iter()
        .map(|p| p.as_ref().map(|p| p.kind))
        .map(|kind| match kind {
            _ if config.perturbs() => "perturbed",
            Some(ProtectKind::Count) if config.round_to > 1 => "rounded",
            _ => "exact",
        })
        .collect()
}

/// The merged rows that may be released and each statistic's protected value over them.
///
/// A row of fewer than `threshold` records is not released at all, labels included: nothing
/// above it can tell an empty group from a small one. Each set of records the aggregate releases
/// statistics about is noted in the ledger, against the question's limit.
pub fn protect_rows(
    merged: LogicalPlan,
    parts: Decomposition,
    config: &DisclosureConfig,
    ledger: &Arc<Ledger>,
    body: &str,
    group_cols: &[Expr],
) -> Result<(LogicalPlan, Vec<Expr>)> {
    let rows = parts
        .rows
        .ok_or_else(|| DataFusionError::Internal("the rows of a protected aggregate are not counted".into()))?;
    ledger.about_people.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sets = ledger.sets.lock().unwrap_or_else(|p| p.into_inner());
    sets.extend(parts.sets.iter().map(|class| set_name(body, class)));
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
            protect_value(value, protection, config, ledger, body, group_cols)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((LogicalPlan::Filter(kept), finals))
}

/// One statistic's released value: its protecting function over the merged value and the
/// hidden columns it is judged by, noting each released value by its set of records (the
/// fragment's `body` and the statistic's class) and its cell's labels.
pub fn protect_value(
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
pub fn set_name(body: &str, class: &str) -> String {
    format!("{body} | {class}")
}

/// The part of a fragment's SQL that says which records it reads and how it groups them (from
/// `FROM` on).
pub fn fragment_body(scan: &LogicalPlan) -> String {
    match FederatedScan::of(scan) {
        Some(scan) => scan
            .sql
            .find(" FROM ")
            .map_or(scan.sql.clone(), |at| scan.sql[at + 1..].to_string()),
        None => String::new(),
    }
}
