//! Cell keys, for perturbation by the cell key method (ABS TableBuilder; ONS Census 2021).
//!
//! Every record has a secret, stable **record key**: a keyed BLAKE3 MAC of the whole row under
//! a secret only its trust holds, cut to 64 bits. A cell's key is the wrapping sum of its
//! records' keys, so it is itself a partial aggregate: each trust sends
//! `tessera_cell_key(<every column>)` per cell, and the coordinator adds the trusts' keys with
//! `tessera_key_sum` — exact and order-free. The same records always give the same key, whatever
//! the query's spelling; any other set of records gives an unrelated one. Keys are answered only
//! to the trust's authenticated coordinator and never leave it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Field, FieldRef, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt64Type,
};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

/// The per-trust aggregate: the wrapping sum of its rows' record keys.
pub const CELL_KEY: &str = "tessera_cell_key";

/// The coordinator's merge: the wrapping sum of the trusts' cell keys.
pub const KEY_SUM: &str = "tessera_key_sum";

/// A trust's secret for record keys (32 bytes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecordKeySecret([u8; 32]);

impl std::fmt::Debug for RecordKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKeySecret(…)")
    }
}

impl RecordKeySecret {
    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Option<RecordKeySecret> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(RecordKeySecret(bytes.try_into().ok()?))
    }

    /// A fresh random secret, as 64 hex digits.
    pub fn generate_hex() -> String {
        crate::auth::generate_token()
    }

    /// The key of one record: the MAC of its values (type-tagged, NULLs marked), cut to 64 bits.
    fn record_key(&self, columns: &[ArrayRef], row: usize, buffer: &mut Vec<u8>) -> Result<u64> {
        buffer.clear();
        for column in columns {
            append_value(column, row, buffer)?;
        }
        let hash = blake3::keyed_hash(&self.0, buffer);
        let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().expect("a BLAKE3 hash has 32 bytes");
        Ok(u64::from_le_bytes(bytes))
    }
}

/// Appends one value's bytes: a tag for its kind (or NULL) and its contents.
fn append_value(column: &ArrayRef, row: usize, buffer: &mut Vec<u8>) -> Result<()> {
    if column.is_null(row) {
        buffer.push(0);
        return Ok(());
    }
    match column.data_type() {
        DataType::Utf8 => text(buffer, column.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => text(buffer, column.as_string::<i64>().value(row)),
        DataType::Utf8View => text(buffer, column.as_string_view().value(row)),
        DataType::Int8 => number(buffer, 1, column.as_primitive::<Int8Type>().value(row) as i64),
        DataType::Int16 => number(buffer, 1, column.as_primitive::<Int16Type>().value(row) as i64),
        DataType::Int32 => number(buffer, 1, column.as_primitive::<Int32Type>().value(row) as i64),
        DataType::Int64 => number(buffer, 1, column.as_primitive::<Int64Type>().value(row)),
        DataType::Date32 => number(buffer, 2, column.as_primitive::<Date32Type>().value(row) as i64),
        DataType::Float64 => {
            buffer.push(3);
            buffer.extend_from_slice(&column.as_primitive::<Float64Type>().value(row).to_le_bytes());
        }
        DataType::Boolean => buffer.extend_from_slice(&[4, column.as_boolean().value(row) as u8]),
        _ => {
            // Anything else by its text (timestamps among them).
            let value = ScalarValue::try_from_array(column, row)?;
            text(buffer, &value.to_string());
        }
    }
    Ok(())
}

fn text(buffer: &mut Vec<u8>, value: &str) {
    buffer.push(5);
    buffer.extend_from_slice(&(value.len() as u64).to_le_bytes());
    buffer.extend_from_slice(value.as_bytes());
}

fn number(buffer: &mut Vec<u8>, tag: u8, value: i64) {
    buffer.push(tag);
    buffer.extend_from_slice(&value.to_le_bytes());
}

/// `tessera_cell_key(columns…)` at a trust (with its secret), or `tessera_key_sum(key)` at the
/// coordinator (without one).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CellKey {
    secret: Option<RecordKeySecret>,
    signature: Signature,
}

impl CellKey {
    /// The trust's aggregate over whole rows, keyed by `secret`.
    pub fn udaf(secret: Option<RecordKeySecret>) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(CellKey {
            secret,
            signature: Signature::variadic_any(Volatility::Immutable),
        }))
    }

    /// The coordinator's merge of partial keys.
    pub fn merge_udaf() -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(KeySum {
            signature: Signature::exact(vec![DataType::UInt64], Volatility::Immutable),
        }))
    }
}

impl AggregateUDFImpl for CellKey {
    fn name(&self) -> &str {
        CELL_KEY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match &self.secret {
            Some(secret) => Ok(Box::new(KeyAccumulator {
                secret: Some(secret.clone()),
                sum: 0,
            })),
            None => exec_err!(
                "{CELL_KEY} needs this trust's record key secret: set [access] record_key_secret in node.toml \
                 (`tessera gen` writes one)"
            ),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![key_field(args.name)])
    }
}

fn key_field(name: &str) -> FieldRef {
    Arc::new(Field::new(format!("{name}[key]"), DataType::UInt64, true))
}

/// The coordinator's wrapping sum of partial keys.
#[derive(Debug, PartialEq, Eq, Hash)]
struct KeySum {
    signature: Signature,
}

impl AggregateUDFImpl for KeySum {
    fn name(&self) -> &str {
        KEY_SUM
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(KeyAccumulator { secret: None, sum: 0 }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![key_field(args.name)])
    }
}

/// Adds record keys (with a secret) or partial keys (without), wrapping.
#[derive(Debug)]
struct KeyAccumulator {
    secret: Option<RecordKeySecret>,
    sum: u64,
}

impl KeyAccumulator {
    fn add_keys(&mut self, keys: &ArrayRef) -> Result<()> {
        let keys = keys.as_primitive::<UInt64Type>();
        for key in keys.iter().flatten() {
            self.sum = self.sum.wrapping_add(key);
        }
        Ok(())
    }
}

impl Accumulator for KeyAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(secret) = &self.secret else {
            return match values.first() {
                Some(keys) if keys.data_type() == &DataType::UInt64 => self.add_keys(keys),
                _ => exec_err!("{KEY_SUM} takes one UInt64 key"),
            };
        };
        let rows = values.first().map_or(0, |c| c.len());
        let mut buffer = Vec::with_capacity(128);
        for row in 0..rows {
            let key = secret.record_key(values, row, &mut buffer)?;
            self.sum = self.sum.wrapping_add(key);
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::UInt64(Some(self.sum)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::UInt64(Some(self.sum))])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.add_keys(&states[0])
    }
}
