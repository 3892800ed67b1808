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

/// Deepest nesting of expressions and sub-queries a question may have.
pub const MAX_NESTING: usize = 64;

/// Refuses, before anything plans it:
///
/// - expressions that nest deeper than [`MAX_NESTING`]: a flat chain such as `1 + 1 + … + 1`
///   parses without recursion but plans into a tree as deep as it is long, and planning a few
///   hundred levels overflows a worker's stack;
/// - text values holding a backslash: SQL printed for a trust writes a value's backslash as is,
///   and the trust's parser reads `\'` as an escaped quote, so the value would end elsewhere and
///   the rest be read as SQL.
///
/// Text that does not parse here is left for the planner to report.
pub fn check_nesting(sql: &str) -> std::result::Result<(), String> {
    use datafusion::sql::sqlparser::ast::{Expr, Query, Visit, Visitor};
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    use std::ops::ControlFlow;

    struct Depth {
        now: usize,
        backslash: bool,
    }
    impl Depth {
        fn enter(&mut self) -> ControlFlow<()> {
            self.now += 1;
            match self.now > MAX_NESTING {
                true => ControlFlow::Break(()),
                false => ControlFlow::Continue(()),
            }
        }
        fn leave(&mut self) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
    }
    impl Visitor for Depth {
        type Break = ();
        fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
            if let Expr::Value(v) = expr {
                if v.value.clone().into_string().is_some_and(|s| s.contains('\\')) {
                    self.backslash = true;
                    return ControlFlow::Break(());
                }
            }
            self.enter()
        }
        fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
            self.leave()
        }
        fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
            self.enter()
        }
        fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
            self.leave()
        }
    }
    let Ok(statements) = Parser::parse_sql(&GenericDialect {}, sql) else {
        return Ok(());
    };
    let mut depth = Depth {
        now: 0,
        backslash: false,
    };
    for statement in &statements {
        if statement.visit(&mut depth).is_break() && depth.backslash {
            return Err("a text value holds a backslash (\\), which a question may not contain".into());
        }
        if depth.now > MAX_NESTING {
            return Err(format!(
                "the question is nested too deeply (more than {MAX_NESTING} levels of operators, functions or \
                 sub-queries); write long lists of conditions with IN (…), or split the question"
            ));
        }
    }
    Ok(())
}
