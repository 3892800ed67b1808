//! `tessera_top2(x)`: the two largest contributions to a group, for the dominance rules.
//!
//! A trust computes it over its records (and answers it only to its authenticated coordinator);
//! the coordinator applies the same function to the trusts' lists, since the two largest of a
//! union are the two largest of the parts' two largest. The result is a list of at most two
//! values, largest first, and is never released: only disclosure control reads it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

/// The function's SQL name.
pub use tessera_protocol::names::TOP2;

/// `List<Float64>`: what `tessera_top2` returns.
pub fn top2_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

/// The aggregate: numeric values (at a trust) or earlier top-2 lists (at the coordinator) in,
/// the two largest out.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Top2 {
    signature: Signature,
}

impl Top2 {
    /// The UDAF, for registering in a session or building a merge expression.
    pub fn udaf() -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(Top2 {
            signature: Signature::any(1, Volatility::Immutable),
        }))
    }
}

impl AggregateUDFImpl for Top2 {
    fn name(&self) -> &str {
        TOP2
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &arg_types[0] {
            t if t.is_numeric() || matches!(t, DataType::List(_) | DataType::Null) => Ok(top2_type()),
            other => datafusion::common::plan_err!("{TOP2} needs a numeric argument, not {other}"),
        }
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::<Top2Accumulator>::default())
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[top2]", args.name),
            top2_type(),
            true,
        ))])
    }
}

/// The two largest values seen so far, largest first.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Contributions {
    pub first: Option<f64>,
    pub second: Option<f64>,
}

impl Contributions {
    /// Takes one more value into account (NaN is ignored).
    pub fn push(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        match self.first {
            Some(first) if v <= first => {
                if self.second.is_none_or(|second| v > second) {
                    self.second = Some(v);
                }
            }
            _ => {
                self.second = self.first;
                self.first = Some(v);
            }
        }
    }

    /// Reads a `tessera_top2` list (NULL or empty: nothing seen).
    pub fn from_list(list: Option<ArrayRef>) -> Result<Contributions> {
        let mut top = Contributions::default();
        if let Some(values) = list {
            let values = cast(&values, &DataType::Float64)?;
            for v in values.as_primitive::<Float64Type>().iter().flatten() {
                top.push(v);
            }
        }
        Ok(top)
    }

    fn to_scalar(self) -> ScalarValue {
        let values = [self.first, self.second]
            .into_iter()
            .flatten()
            .map(|v| ScalarValue::Float64(Some(v)))
            .collect::<Vec<_>>();
        ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Float64))
    }
}

#[derive(Debug, Default)]
struct Top2Accumulator {
    top: Contributions,
}

impl Top2Accumulator {
    fn absorb(&mut self, values: &ArrayRef) -> Result<()> {
        match values.data_type() {
            DataType::List(_) => {
                let lists = values.as_list::<i32>();
                for i in 0..lists.len() {
                    if lists.is_valid(i) {
                        let part = Contributions::from_list(Some(lists.value(i)))?;
                        for v in [part.first, part.second].into_iter().flatten() {
                            self.top.push(v);
                        }
                    }
                }
            }
            _ => {
                let values = cast(values, &DataType::Float64)?;
                for v in values.as_primitive::<Float64Type>().iter().flatten() {
                    self.top.push(v);
                }
            }
        }
        Ok(())
    }
}

impl Accumulator for Top2Accumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.absorb(&values[0])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.absorb(&states[0])
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.top.to_scalar()])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.top.to_scalar())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}
