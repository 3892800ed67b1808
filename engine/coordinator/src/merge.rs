//! Step 5: the central merge of one federated aggregate — the partial states from every trust
//! combined exactly (sums of sums; [`crate::moments`] for second moments), shaped like the
//! original aggregate, with disclosure control ([`crate::protect`]) between the merge and
//! anything above it.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::common::metadata::FieldMetadata;
use datafusion::common::Column;
use datafusion::error::Result;
use datafusion::functions::math::expr_fn::round;
use datafusion::logical_expr::{cast, Aggregate, Expr, LogicalPlan, Projection};
use tessera_disclosure::{DisclosureConfig, Ledger};
use tessera_protocol::names::STATUS_METADATA;

use crate::decompose::Decomposition;
use crate::noise::NOISE_FROM_METADATA;
use crate::protect::released::Released;
use crate::protect::values::{fragment_body, protect_rows, statuses};

/// The central merge over the partial answers in `scan`, shaped exactly like the original
/// aggregate; `disclosure` (the rules and the question's ledger) protects every value when set;
/// under differential privacy, `noise` marks what each value's noise is made of
/// ([`crate::noise::shapes`]).
pub fn merge(
    aggregate: &Aggregate,
    parts: Decomposition,
    scan: LogicalPlan,
    disclosure: Option<&(&DisclosureConfig, Arc<Ledger>)>,
    noise: Vec<Option<String>>,
) -> Result<LogicalPlan> {
    let body = fragment_body(&scan);
    let group_cols = (0..aggregate.group_expr.len())
        .map(|i| Expr::Column(Column::from_name(format!("g{i}"))))
        .collect::<Vec<_>>();
    let merges = parts
        .merges
        .iter()
        .cloned()
        .enumerate()
        .map(|(k, e)| e.alias(format!("m{k}")))
        .collect::<Vec<_>>();
    let merged = LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(scan), group_cols.clone(), merges)?);
    // Each released statistic says how it was released (`tessera.status`), for clients to mark.
    let status = disclosure.map(|(config, _)| statuses(&parts, config));
    let (input, finals) = match disclosure {
        Some((config, ledger)) => protect_rows(merged, parts, config, ledger, &body, &group_cols)?,
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
            let k = i.checked_sub(groups);
            let mut metadata = BTreeMap::new();
            if let Some(s) = k.and_then(|k| status.as_ref()?.get(k)) {
                metadata.insert(STATUS_METADATA.to_string(), s.to_string());
            }
            if let Some(mark) = k.and_then(|k| noise.get(k)?.clone()) {
                metadata.insert(NOISE_FROM_METADATA.to_string(), mark);
            }
            let metadata = (!metadata.is_empty()).then(|| FieldMetadata::from(metadata));
            cast(expr, field.data_type().clone()).alias_qualified_with_metadata(
                qualifier.cloned(),
                field.name(),
                metadata,
            )
        })
        .collect::<Vec<_>>();
    let released = LogicalPlan::Projection(Projection::try_new(projection, Arc::new(input))?);
    // Nothing above may be evaluated on rows disclosure control did not release.
    Ok(match disclosure {
        Some(_) => Released::wrap(released),
        None => released,
    })
}
