//! Filling the grid with the exact statistics (zero where no record falls), or selecting the
//! cells a noisy threshold lets through, and adding each statistic's discrete Gaussian noise:
//! the only numbers that leave the trust.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use rand::RngCore;
use tessera_privacy::sampler::discrete_gaussian;
use tessera_privacy::Calibration;
use tessera_protocol::names::{NOISE_SD_METADATA, SENSITIVITY_METADATA};

use super::grid::{Cells, KeyValues};

/// What the exact aggregate output means, column by column.
pub struct Layout<'a> {
    /// Number of group key columns (first in the aggregate's output).
    pub keys: usize,
    /// Per statistic, its noise.
    pub noise: &'a [Calibration],
    /// Per statistic, what one of its units is worth (the noisy value is scaled by it).
    pub units: &'a [i64],
    /// Per statistic, what one person can change it by, in units (its noise is calibrated to it).
    pub sensitivities: &'a [f64],
    /// Per answer column: the aggregate column it is, and its name.
    pub output: &'a [(usize, String)],
    /// The aggregate's output types (a statistic keeps its type; its values are whole numbers).
    pub types: &'a [DataType],
    /// Whether each may be NULL (a released value never is, but the schema says what the
    /// fragment's own schema says, so that a client sees one schema).
    pub nullable: &'a [bool],
}

/// How cells are selected when the grid is too large to release whole.
#[derive(Debug, Clone, Copy)]
pub struct Selection {
    /// The noise added to each cell's count of records (the count after the statistics in the
    /// exact answer).
    pub noise: Calibration,
    /// The noisy count a cell must reach.
    pub threshold: u64,
}

/// The released batch: one row per grid cell (none when the question's conditions leave no
/// public value, which the contracts alone decide), or with `selection`, one per cell whose
/// noisy count of records reaches the threshold.
pub fn release(
    exact: &[RecordBatch],
    cells: &Cells,
    selection: Option<&Selection>,
    layout: &Layout,
    rng: &mut dyn RngCore,
) -> Result<RecordBatch, String> {
    let statistics = layout.noise.len();
    let values = exact_cells(exact, layout.keys, statistics + usize::from(selection.is_some()))?;
    let grid = match (cells, selection) {
        (Cells::Grid(grid), _) => grid.clone(),
        (Cells::Selected(public), Some(selection)) => selected(&values, statistics, public, selection, rng),
        (Cells::Selected(_), None) => return Err("cells to select, and no threshold".into()),
    };
    let zeros = vec![0i128; statistics];
    let mut noisy: Vec<Vec<i128>> = vec![Vec::with_capacity(grid.len()); statistics];
    for cell in &grid {
        let exact = values.get(cell).map_or(zeros.as_slice(), |v| &v[..statistics]);
        for (s, value) in exact.iter().enumerate() {
            let noise = discrete_gaussian(rng, layout.noise[s].sigma2);
            let scaled = (value + noise)
                .checked_mul(i128::from(layout.units[s]))
                .ok_or_else(|| "a noisy value is out of range".to_string())?;
            noisy[s].push(scaled);
        }
    }
    let mut columns = Vec::new();
    let mut fields = Vec::new();
    for (index, name) in layout.output {
        if *index < layout.keys {
            let array = match grid.is_empty() {
                true => datafusion::arrow::array::new_empty_array(&layout.types[*index]),
                false => ScalarValue::iter_to_array(grid.iter().map(|cell| cell[*index].clone()))
                    .map_err(|e| e.to_string())?,
            };
            fields.push(Field::new(name, array.data_type().clone(), layout.nullable[*index]));
            columns.push(array);
        } else {
            let s = index - layout.keys;
            let array: ArrayRef = match layout.types[*index] {
                DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                    Arc::new(Float64Array::from_iter_values(noisy[s].iter().map(|&v| v as f64)))
                }
                _ => Arc::new(Int64Array::from(
                    noisy[s]
                        .iter()
                        .map(|&v| i64::try_from(v).map_err(|_| "a noisy value is out of range".to_string()))
                        .collect::<Result<Vec<_>, _>>()?,
                )),
            };
            let unit = layout.units[s] as f64;
            let sd = HashMap::from([
                (
                    NOISE_SD_METADATA.to_string(),
                    format!("{}", layout.noise[s].sd() * unit),
                ),
                (
                    SENSITIVITY_METADATA.to_string(),
                    format!("{}", layout.sensitivities[s] * unit),
                ),
            ]);
            fields.push(Field::new(name, array.data_type().clone(), layout.nullable[*index]).with_metadata(sd));
            columns.push(array);
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

/// The exact answer by cell: its first `values` statistics, in whole units, by key values.
fn exact_cells(
    exact: &[RecordBatch],
    keys: usize,
    values: usize,
) -> Result<HashMap<Vec<ScalarValue>, Vec<i128>>, String> {
    let mut cells = HashMap::new();
    for batch in exact {
        let columns = (0..values)
            .map(|s| {
                let array = cast(batch.column(keys + s), &DataType::Float64).map_err(|e| e.to_string())?;
                array
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .cloned()
                    .ok_or_else(|| "a statistic is not numeric".to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let key = (0..keys)
                .map(|k| ScalarValue::try_from_array(batch.column(k), row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            // Sums are of whole units (each record was rounded); an empty sum is zero.
            let stats = columns
                .iter()
                .map(|a| match a.is_null(row) {
                    true => Ok(0),
                    // Every record's value was clamped to finite bounds: anything else is a bug.
                    false if a.value(row).is_finite() => Ok(a.value(row).round() as i128),
                    false => Err("a statistic is not finite".to_string()),
                })
                .collect::<Result<_, _>>()?;
            cells.insert(key, stats);
        }
    }
    Ok(cells)
}

/// The cells with public key values whose count of records (value `statistics` of each), with
/// fresh noise, reaches the threshold, in key order. Only cells that hold records can pass,
/// which is why the threshold is far above what one person's records can make.
fn selected(
    cells: &HashMap<Vec<ScalarValue>, Vec<i128>>,
    statistics: usize,
    public: &[KeyValues],
    selection: &Selection,
    rng: &mut dyn RngCore,
) -> Vec<Vec<ScalarValue>> {
    let mut kept = cells
        .iter()
        .filter(|(key, _)| public.iter().all(|column| column.admits(key)))
        .filter(|(_, values)| {
            values[statistics] + discrete_gaussian(rng, selection.noise.sigma2) >= i128::from(selection.threshold)
        })
        .map(|(key, _)| key.clone())
        .collect::<Vec<_>>();
    kept.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    kept
}
