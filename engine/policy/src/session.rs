//! The DataFusion session every Tessera process starts from, and the public reference tables
//! that ship with the contracts.

use std::sync::Arc;

use datafusion::arrow::csv::ReaderBuilder;
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::execution::context::SessionConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;
use tessera_protocol::names::{CATALOG, SCHEMA};
use tessera_schemas::{Catalog, Contract};

/// A session with DataFusion's built-in functions and no information schema: only the tables
/// a node registers from its contracts are visible. `memory_limit` caps DataFusion's memory pool.
pub fn new_session(memory_limit: Option<usize>) -> Result<SessionContext> {
    let config = session_config();
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = memory_limit {
        runtime = runtime.with_memory_limit(bytes, 1.0);
    }
    Ok(SessionContext::new_with_config_rt(config, Arc::new(runtime.build()?)))
}

/// The configuration shared by nodes and the coordinator.
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_information_schema(false)
        .with_default_catalog_and_schema(CATALOG, SCHEMA)
        .with_create_default_catalog_and_schema(true)
        // Text in Parquet files is read as Utf8, matching the contracts.
        .set_bool("datafusion.execution.parquet.schema_force_view_types", false)
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
}

/// Registers a public reference table from the CSV that ships with its contract.
pub fn register_public(ctx: &SessionContext, catalog: &Catalog, contract: &Contract) -> Result<()> {
    let csv = catalog.public_data(&contract.name).unwrap_or("");
    let schema = contract.arrow_schema();
    let reader = ReaderBuilder::new(schema.clone())
        .with_header(true)
        .build(std::io::Cursor::new(csv.as_bytes()))?;
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    let table = MemTable::try_new(schema, vec![batches])?;
    ctx.register_table(contract.name.as_str(), Arc::new(table))?;
    Ok(())
}
