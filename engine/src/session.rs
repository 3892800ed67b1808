//! The DataFusion session every Tessera process starts from.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::context::SessionConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionContext;

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
        .with_default_catalog_and_schema("tessera", "public")
        .with_create_default_catalog_and_schema(true)
        // Text in Parquet files is read as Utf8, matching the contracts.
        .set_bool("datafusion.execution.parquet.schema_force_view_types", false)
        .set_bool("datafusion.sql_parser.map_string_types_to_utf8view", false)
}
