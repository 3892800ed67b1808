//! One table contract: columns, Arrow types and roles.

use std::str::FromStr;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::Deserialize;

/// What a column is for; decides what the node lets anyone do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A pseudonymous person identifier: may be counted or used as a join key, never shown,
    /// grouped on or compared with a value.
    Identifier,
    /// A categorical attribute with a public domain: may be grouped on and filtered.
    Dimension,
    /// A number to aggregate.
    Measure,
    /// A date or time: may be filtered, truncated and grouped on.
    Date,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Identifier => "identifier",
            Role::Dimension => "dimension",
            Role::Measure => "measure",
            Role::Date => "date",
        })
    }
}

/// One column of a contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data_type: DataType,
    pub role: Role,
    pub nullable: bool,
    /// Name of the public domain (dimensions only).
    pub domain: Option<String>,
    /// Plausible range of a measure, used for clamping and checks.
    pub bounds: Option<(f64, f64)>,
    /// A sensitive measure: its minimum or maximum would release one person's raw value.
    pub sensitive: bool,
    /// Public band edges of a measure: the only values a condition or a band may compare it
    /// with (whole numbers: `x <= e` / `x > e`; amounts: `x < e` / `x >= e`).
    pub bands: Vec<f64>,
    /// The finest period of a date a result may show or select (dates only).
    pub grain: Grain,
    pub description: String,
}

/// The finest period of a date column that results may show or select (`grain` in a contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Grain {
    Day,
    #[default]
    Month,
    Quarter,
    Year,
}

impl Grain {
    /// The name used in SQL (`date_trunc('month', …)`).
    pub fn name(self) -> &'static str {
        match self {
            Grain::Day => "day",
            Grain::Month => "month",
            Grain::Quarter => "quarter",
            Grain::Year => "year",
        }
    }

    /// The grain a `date_trunc`/`date_part` unit stands for, if it is one of these.
    pub fn of_unit(unit: &str) -> Option<Grain> {
        match unit.to_ascii_lowercase().as_str() {
            "day" | "dow" | "doy" => Some(Grain::Day),
            "month" => Some(Grain::Month),
            "quarter" => Some(Grain::Quarter),
            "year" => Some(Grain::Year),
            _ => None,
        }
    }
}

/// A versioned table contract shared by every trust and the coordinator.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    pub name: String,
    pub version: u32,
    pub description: String,
    /// Public reference data: rows may be read directly, and the data ships with Tessera.
    pub public: bool,
    /// For public tables, the CSV file (beside the contract) that holds the rows.
    pub data: Option<String>,
    /// For public tables, the columns that identify a row: a join with trust data must match
    /// all of them, so that no record is counted twice.
    pub key: Vec<String>,
    pub columns: Vec<Column>,
}

impl Contract {
    /// The Arrow schema every trust's data for this table must have.
    pub fn arrow_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.data_type.clone(), c.nullable))
                .collect::<Vec<_>>(),
        ))
    }

    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Names of the identifier columns.
    pub fn identifiers(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.role == Role::Identifier)
    }
}

/// The TOML shape of a contract file, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContractFile {
    pub table: TableSection,
    pub columns: Vec<ColumnSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableSection {
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub key: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ColumnSection {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub role: Role,
    #[serde(default = "default_nullable")]
    pub nullable: bool,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub bounds: Option<(f64, f64)>,
    #[serde(default)]
    pub sensitive: bool,
    #[serde(default)]
    pub bands: Vec<f64>,
    #[serde(default)]
    pub grain: Option<Grain>,
    #[serde(default)]
    pub description: String,
}

fn default_nullable() -> bool {
    true
}

/// Parses an Arrow type name as written in a contract (`Utf8`, `Int32`, `Timestamp(Microsecond, None)` …).
pub(crate) fn parse_data_type(text: &str) -> Option<DataType> {
    DataType::from_str(text.trim()).ok()
}
