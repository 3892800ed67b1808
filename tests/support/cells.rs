//! Results as rows of cells, compared with independently computed expectations.

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};

/// One value of a result, for comparison with independently computed expectations.
#[derive(Debug, Clone)]
pub enum Cell {
    Int(i64),
    Float(f64),
    Str(String),
    Null,
}

impl Cell {
    fn sort_key(&self) -> String {
        match self {
            Cell::Int(i) => format!("{i:020}"),
            Cell::Float(f) => format!("{f:030.6}"),
            Cell::Str(s) => s.clone(),
            Cell::Null => "∅".into(),
        }
    }

    /// Equal, with floats within 1e-9 relative.
    pub fn matches(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Int(a), Cell::Int(b)) => a == b,
            (Cell::Float(a), Cell::Float(b)) => close(*a, *b),
            (Cell::Int(a), Cell::Float(b)) | (Cell::Float(b), Cell::Int(a)) => close(*a as f64, *b),
            (Cell::Str(a), Cell::Str(b)) => a == b,
            (Cell::Null, Cell::Null) => true,
            _ => false,
        }
    }
}

/// Relative closeness used by every float comparison in the tests.
pub fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

impl From<i64> for Cell {
    fn from(v: i64) -> Cell {
        Cell::Int(v)
    }
}
impl From<usize> for Cell {
    fn from(v: usize) -> Cell {
        Cell::Int(v as i64)
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Cell {
        Cell::Float(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Cell {
        Cell::Str(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Cell {
        Cell::Str(v)
    }
}

/// The rows of an answer as cells (dates and times as ISO text).
pub fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = batch.columns();
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| cell(c.as_ref(), i)).collect());
        }
    }
    rows
}

fn cell(array: &dyn Array, i: usize) -> Cell {
    if array.is_null(i) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::UInt64 => {
            let a = cast(&array.slice(i, 1), &DataType::Int64).unwrap();
            Cell::Int(a.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0))
        }
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            let a = cast(&array.slice(i, 1), &DataType::Float64).unwrap();
            Cell::Float(a.as_primitive::<Float64Type>().value(0))
        }
        _ => {
            let a = cast(&array.slice(i, 1), &DataType::Utf8).unwrap();
            Cell::Str(a.as_string::<i32>().value(0).to_string())
        }
    }
}

/// Compares an answer with expected rows, in any order unless `ordered`; returns a description of the first difference.
pub fn compare(actual: &[Vec<Cell>], expected: &[Vec<Cell>], ordered: bool) -> Result<(), String> {
    let key = |row: &Vec<Cell>| row.iter().map(Cell::sort_key).collect::<Vec<_>>().join("|");
    let (mut a, mut e) = (actual.to_vec(), expected.to_vec());
    if !ordered {
        a.sort_by_key(key);
        e.sort_by_key(key);
    }
    if a.len() != e.len() {
        return Err(format!(
            "{} rows, expected {}\nactual: {a:?}\nexpected: {e:?}",
            a.len(),
            e.len()
        ));
    }
    for (ra, re) in a.iter().zip(&e) {
        if ra.len() != re.len() || !ra.iter().zip(re).all(|(x, y)| x.matches(y)) {
            return Err(format!("row {ra:?}, expected {re:?}"));
        }
    }
    Ok(())
}
