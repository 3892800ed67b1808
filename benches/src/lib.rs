//! Shared helpers for Tessera's benchmark binaries: timing summaries and table output.

pub mod private;

use std::time::Duration;

/// Median and 95th percentile of a set of timings, in milliseconds.
pub fn summarise(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    (at(0.5), at(0.95))
}

/// What disclosure control cost one result: rows withheld and how far released values moved.
#[derive(Debug, Default, Clone, Copy)]
pub struct Utility {
    /// Rows of the exact answer.
    pub exact_rows: usize,
    /// Rows of the exact answer missing from the protected one.
    pub rows_lost: usize,
    /// Values compared (numeric cells of rows present in both).
    pub values: usize,
    /// Of those, withheld (NULL in the protected answer only).
    pub values_withheld: usize,
    /// Mean of |protected − exact| / |exact| over the values released in both.
    pub mean_relative_change: f64,
    /// Of the values released in both, those within 2 % of the exact value.
    pub within_2pct: usize,
}

/// Compares a protected answer with the exact one, matching rows by their text and date columns.
pub fn utility(
    exact: &[datafusion::arrow::array::RecordBatch],
    protected: &[datafusion::arrow::array::RecordBatch],
) -> Utility {
    use std::collections::HashMap;
    // Released statistics carry their status (or, computed further, are fractional); every
    // other column is a label.
    let statistic = |i: usize| {
        protected.first().is_some_and(|b| {
            let field = b.schema().field(i).clone();
            let m = field.metadata();
            m.contains_key("tessera.status")
                || m.contains_key("tessera.noise_sd")
                || m.contains_key("tessera.noise")
                || field.data_type().is_floating()
        })
    };
    let exact = rows(exact, &statistic);
    let protected = rows(protected, &statistic).into_iter().collect::<HashMap<_, _>>();
    let mut u = Utility {
        exact_rows: exact.len(),
        ..Utility::default()
    };
    let mut total = 0.0;
    let mut released = 0usize;
    for (labels, values) in &exact {
        let Some(other) = protected.get(labels) else {
            u.rows_lost += 1;
            continue;
        };
        for (e, p) in values.iter().zip(other) {
            let Some(e) = e else { continue };
            u.values += 1;
            match p {
                None => u.values_withheld += 1,
                Some(p) if *e != 0.0 => {
                    let change = (p - e).abs() / e.abs();
                    total += change;
                    released += 1;
                    u.within_2pct += usize::from(change <= 0.02);
                }
                Some(_) => {}
            }
        }
    }
    u.mean_relative_change = if released > 0 { total / released as f64 } else { 0.0 };
    u
}

type Row = (Vec<String>, Vec<Option<f64>>);

/// Each row's labels and statistics (numbers).
fn rows(batches: &[datafusion::arrow::array::RecordBatch], statistic: &dyn Fn(usize) -> bool) -> Vec<Row> {
    use datafusion::arrow::array::Array;
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Float64Type};
    let mut out = Vec::new();
    for batch in batches {
        let columns = batch.columns();
        for i in 0..batch.num_rows() {
            let mut labels = Vec::new();
            let mut values = Vec::new();
            for (c, column) in columns.iter().enumerate() {
                if statistic(c) && column.data_type().is_numeric() {
                    let numbers = cast(column, &DataType::Float64).expect("numbers cast to Float64");
                    let numbers = numbers
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::PrimitiveArray<Float64Type>>();
                    values.push(numbers.filter(|n| !n.is_null(i)).map(|n| n.value(i)));
                } else {
                    let text = cast(column, &DataType::Utf8).expect("labels cast to text");
                    let text = text.as_any().downcast_ref::<datafusion::arrow::array::StringArray>();
                    labels.push(text.map(|t| t.value(i).to_string()).unwrap_or_default());
                }
            }
            out.push((labels, values));
        }
    }
    out
}

/// What every benchmark starts with: the in-process nodes' logs on, a temporary folder for the
/// generated trusts, and the built-in contracts.
pub fn start() -> (tempfile::TempDir, tessera_schemas::Catalog) {
    tessera_node::logging::init();
    let dir = tempfile::tempdir().expect("temporary folder");
    (dir, tessera_schemas::Catalog::builtin())
}
