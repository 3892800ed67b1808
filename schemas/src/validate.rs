//! Checks a data file's schema against its contract.

use std::path::Path;

use arrow::datatypes::{DataType, Schema};

use crate::{Contract, ContractError};

/// How the data file names its columns; decides how strictly they must line up with the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaSource {
    /// A self-describing file (Parquet): columns are matched by name, extra columns stay invisible.
    Named,
    /// A CSV header: columns are read by position, so they must be exactly the contract's, in order.
    Positional,
}

/// Checks that `found` (the schema read from `file`) provides every contract column with a compatible type.
pub fn validate_schema(
    contract: &Contract,
    file: &Path,
    found: &Schema,
    source: SchemaSource,
) -> Result<(), ContractError> {
    let file = file.to_path_buf();
    if source == SchemaSource::Positional {
        for (position, field) in found.fields().iter().enumerate() {
            match contract.columns.get(position) {
                Some(expected) if expected.name == *field.name() => {}
                Some(expected) => {
                    return Err(ContractError::ColumnOrder {
                        file,
                        table: contract.name.clone(),
                        position: position + 1,
                        expected: expected.name.clone(),
                        found: field.name().clone(),
                    })
                }
                None => {
                    return Err(ContractError::UnexpectedColumn {
                        file,
                        table: contract.name.clone(),
                        column: field.name().clone(),
                    })
                }
            }
        }
    }
    for column in &contract.columns {
        let Ok(field) = found.field_with_name(&column.name) else {
            return Err(ContractError::MissingColumn {
                file,
                table: contract.name.clone(),
                column: column.name.clone(),
                expected: column.data_type.to_string(),
            });
        };
        if source == SchemaSource::Named && !compatible(&column.data_type, field.data_type()) {
            return Err(ContractError::TypeMismatch {
                file,
                table: contract.name.clone(),
                column: column.name.clone(),
                expected: column.data_type.to_string(),
                found: field.data_type().to_string(),
            });
        }
    }
    Ok(())
}

/// Whether data stored as `found` can be read losslessly as the contract's `expected` type.
fn compatible(expected: &DataType, found: &DataType) -> bool {
    use DataType::*;
    let is_string = |t: &DataType| match t {
        Utf8 | LargeUtf8 | Utf8View => true,
        Dictionary(_, value) => matches!(value.as_ref(), Utf8 | LargeUtf8 | Utf8View),
        _ => false,
    };
    match (expected, found) {
        (a, b) if a == b => true,
        (a, b) if is_string(a) && is_string(b) => true,
        (Timestamp(_, tz_a), Timestamp(_, tz_b)) => tz_a.is_some() == tz_b.is_some(),
        _ => false,
    }
}
