//! Cell keys, for perturbation by the cell key method (ABS TableBuilder; ONS Census 2021).
//!
//! Every record has a secret, stable **record key**: a keyed hash of the whole row under a secret
//! only its trust holds (DataFusion's vectorised row hash seeded from the secret by BLAKE3, then a
//! keyed SplitMix64 finaliser). A cell's key is the wrapping sum of its
//! records' keys, so it is itself a partial aggregate: each trust sends
//! `tessera_cell_key(<every column>)` per cell, and the coordinator adds the trusts' keys with
//! `tessera_key_sum` — exact and order-free. The same records always give the same key, whatever
//! the query's spelling; any other set of records gives an unrelated one. Keys are answered only
//! to the trust's authenticated coordinator and never leave it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::hash_utils::{create_hashes, QualityRandomState};
use datafusion::common::{exec_err, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

/// The per-trust aggregate: the wrapping sum of its rows' record keys.
pub use tessera_protocol::names::CELL_KEY;

/// The coordinator's merge: the wrapping sum of the trusts' cell keys.
pub const KEY_SUM: &str = "tessera_key_sum";

/// A trust's secret for record keys, kept as what the keys are made with: the row hash's seed and
/// the finaliser's mask, both derived from the 32 secret bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecordKeySecret {
    seed: u64,
    mask: u64,
}

impl std::fmt::Debug for RecordKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordKeySecret(…)")
    }
}

impl RecordKeySecret {
    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Option<RecordKeySecret> {
        let bytes: [u8; 32] = hex::decode(text.trim()).ok()?.try_into().ok()?;
        let derived = blake3::keyed_hash(&bytes, b"tessera record keys v1");
        let derived = derived.as_bytes();
        let word = |i: usize| u64::from_le_bytes(derived[i..i + 8].try_into().expect("8 bytes of a 32-byte hash"));
        Some(RecordKeySecret {
            seed: word(0),
            mask: word(8),
        })
    }

    /// A fresh random secret, as 64 hex digits.
    pub fn generate_hex() -> String {
        tessera_protocol::credentials::generate_token()
    }

    /// The keys of a batch's records: a hash of each whole row keyed by 64 bits derived from the
    /// secret (vectorised, DataFusion's row hashing), then a keyed non-linear finaliser, so that
    /// key sums of different record sets are unrelated even when their columns' values coincide.
    fn record_keys(&self, columns: &[ArrayRef], keys: &mut Vec<u64>) -> Result<()> {
        let rows = columns.first().map_or(0, |c| c.len());
        keys.clear();
        keys.resize(rows, 0);
        create_hashes(columns, &QualityRandomState::with_seed(self.seed), keys)?;
        for key in keys.iter_mut() {
            *key = finalise(*key ^ self.mask);
        }
        Ok(())
    }
}

/// SplitMix64's finaliser: a bijection of 64-bit words that mixes every bit into every other.
fn finalise(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `tessera_cell_key(columns…)` at a trust (with its secret; without one only for planning the
/// fragment), or `tessera_key_sum(key)`, the coordinator's merge of the trusts' partial keys.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CellKey {
    name: &'static str,
    secret: Option<RecordKeySecret>,
    signature: Signature,
}

impl CellKey {
    /// The trust's aggregate over whole rows, keyed by `secret`.
    pub fn udaf(secret: Option<RecordKeySecret>) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(CellKey {
            name: CELL_KEY,
            secret,
            signature: Signature::variadic_any(Volatility::Immutable),
        }))
    }

    /// The coordinator's merge of partial keys.
    pub fn merge_udaf() -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(CellKey {
            name: KEY_SUM,
            secret: None,
            signature: Signature::exact(vec![DataType::UInt64], Volatility::Immutable),
        }))
    }
}

impl AggregateUDFImpl for CellKey {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if self.name == CELL_KEY && self.secret.is_none() {
            return exec_err!(
                "{CELL_KEY} needs this trust's record key secret: set [access] record_key_secret in node.toml \
                 (`tessera gen` writes one)"
            );
        }
        Ok(Box::new(KeyAccumulator {
            secret: self.secret.clone(),
            sum: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[key]", args.name),
            DataType::UInt64,
            true,
        ))])
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
        let mut keys = Vec::new();
        secret.record_keys(values, &mut keys)?;
        self.sum = keys.iter().fold(self.sum, |sum, key| sum.wrapping_add(*key));
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
