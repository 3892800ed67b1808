//! One contract column's public values as a small batch, and the question's own expressions
//! (its keys, its conditions on the column) evaluated on it directly: what a grid is listed
//! from, with no query planned or run.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::Expr;
use tessera_policy::Refusal;
use tessera_schemas::Contract;

use super::grid::{witness_values, Witnesses};

/// A contract column: its table and name.
pub type BaseColumn = (String, String);

/// Public values of one column, under its table's name so that the question's expressions,
/// which name `table.column`, evaluate on them.
pub struct PublicValues {
    schema: DFSchema,
    batch: RecordBatch,
}

impl PublicValues {
    /// The public values of `column` (`None`: a constant key's single row).
    pub fn of(
        column: Option<&BaseColumn>,
        contracts: &std::collections::BTreeMap<String, Contract>,
        witnesses: &Witnesses,
    ) -> Result<PublicValues, Refusal> {
        let (table, field, values): (&str, Field, ArrayRef) = match column {
            None => (
                "__one",
                Field::new("one", DataType::Utf8, true),
                Arc::new(StringArray::from(vec![Some("1")])),
            ),
            Some((table, name)) => {
                let contract = contracts
                    .get(table)
                    .ok_or_else(|| Refusal::new(format!("table {table} is not served by this trust")))?;
                let info = contract
                    .column(name)
                    .ok_or_else(|| Refusal::new(format!("{table} has no column {name}")))?;
                let values = witness_values(contract, info, witnesses)?;
                let values = cast(&values, &info.data_type).map_err(|e| listing_failed(e.into()))?;
                (table, Field::new(name, info.data_type.clone(), true), values)
            }
        };
        let schema = Arc::new(Schema::new(vec![field]));
        let batch = RecordBatch::try_new(schema.clone(), vec![values]).map_err(|e| listing_failed(e.into()))?;
        let schema = DFSchema::try_from_qualified_schema(table, &schema).map_err(listing_failed)?;
        Ok(PublicValues { schema, batch })
    }

    /// The values `condition` holds for (not where it is false or NULL).
    pub fn filter(&self, state: &SessionState, condition: Expr) -> Result<PublicValues, Refusal> {
        let held = self.evaluate(state, condition)?;
        let held = held.as_any().downcast_ref::<BooleanArray>().ok_or_else(|| {
            Refusal::new("cannot list the public values of a group key: a condition is not true or false")
        })?;
        let batch = filter_record_batch(&self.batch, held).map_err(|e| listing_failed(e.into()))?;
        Ok(PublicValues {
            schema: self.schema.clone(),
            batch,
        })
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// The distinct tuples of `exprs` over the values, each cast to its type, in order.
    pub fn distinct(
        &self,
        state: &SessionState,
        exprs: &[(Expr, &DataType)],
    ) -> Result<Vec<Vec<ScalarValue>>, Refusal> {
        let columns = exprs
            .iter()
            .map(|(e, kind)| {
                let array = self.evaluate(state, e.clone())?;
                cast(&array, kind).map_err(|e| listing_failed(e.into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut rows = (0..self.len())
            .map(|row| {
                columns
                    .iter()
                    .map(|array| ScalarValue::try_from_array(array, row))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(listing_failed)?;
        rows.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        rows.dedup();
        Ok(rows)
    }

    /// `expr` on every value (coerced to the column's type as a query would be).
    fn evaluate(&self, state: &SessionState, expr: Expr) -> Result<ArrayRef, Refusal> {
        let physical = state.create_physical_expr(expr, &self.schema).map_err(listing_failed)?;
        physical
            .evaluate(&self.batch)
            .and_then(|v| v.into_array(self.batch.num_rows()))
            .map_err(listing_failed)
    }
}

/// A refusal for a key whose public values could not be listed.
pub fn listing_failed(e: datafusion::error::DataFusionError) -> Refusal {
    Refusal::new(format!(
        "cannot list the public values of a group key: {}",
        e.strip_backtrace()
    ))
}
