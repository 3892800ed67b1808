//! Errors raised while loading contracts or checking data against them.

use std::path::PathBuf;

/// Something about a contract file or a data file does not match what Tessera expects.
///
/// Every variant names the file and, where relevant, the column, what was expected and what was found,
/// so a trust's data engineer can fix the problem without reading code.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ContractError {
    #[error("{file}: cannot read: {message}")]
    Io { file: PathBuf, message: String },

    #[error("{file}: invalid contract: {message}")]
    Parse { file: PathBuf, message: String },

    #[error("{file}: column `{column}`: unknown Arrow type `{found}` (expected e.g. Utf8, Int32, Float64, Date32, Boolean, Timestamp(Microsecond, None))")]
    UnknownType {
        file: PathBuf,
        column: String,
        found: String,
    },

    #[error("{file}: column `{column}`: unknown domain `{domain}` (not defined in domains.toml)")]
    UnknownDomain {
        file: PathBuf,
        column: String,
        domain: String,
    },

    #[error("{file}: column `{column}`: {message}")]
    InvalidColumn {
        file: PathBuf,
        column: String,
        message: String,
    },

    #[error("{file}: column `{column}` is missing (contract {table} expects {expected})")]
    MissingColumn {
        file: PathBuf,
        table: String,
        column: String,
        expected: String,
    },

    #[error("{file}: column `{column}` has type {found}, but contract {table} expects {expected}")]
    TypeMismatch {
        file: PathBuf,
        table: String,
        column: String,
        expected: String,
        found: String,
    },

    #[error("{file}: column {position} is `{found}`, but contract {table} expects `{expected}` there (CSV columns must follow the contract's order)")]
    ColumnOrder {
        file: PathBuf,
        table: String,
        position: usize,
        expected: String,
        found: String,
    },

    #[error(
        "{file}: column `{column}` is not in contract {table} (CSV files must have exactly the contract's columns)"
    )]
    UnexpectedColumn {
        file: PathBuf,
        table: String,
        column: String,
    },

    #[error("unknown table `{0}`: not defined by any contract")]
    UnknownTable(String),
}
