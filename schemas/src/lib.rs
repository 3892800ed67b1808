//! Tessera's shared data contracts.
//!
//! Every trust and the coordinator agree on the same table contracts (`contracts/*.toml`):
//! column names, Arrow types, roles (`identifier`, `dimension`, `measure`, `date`), public value
//! domains and measure bounds. This crate loads them, turns them into Arrow schemas, validates
//! data files against them, and generates realistic synthetic NHS-like data that conforms to them.
//! [`toml_file`] reads any of Tessera's TOML files with errors that name the file and line.

pub mod catalog;
pub mod contract;
pub mod domain;
pub mod error;
pub mod gen;
pub mod toml_file;
pub mod validate;

pub use catalog::Catalog;
pub use contract::{Column, Contract, Grain, Role};
pub use domain::{Domain, DomainValue};
pub use error::ContractError;
pub use validate::{validate_schema, SchemaSource};
