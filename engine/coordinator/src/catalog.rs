//! Tables as the coordinator sees them: federated tables (rows stay at the trusts) and public
//! reference tables (rows ship with Tessera).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use tessera_policy::session::register_public;
use tessera_schemas::{Catalog, Contract};

/// A table whose rows live at the trusts. Its schema is the contract; scanning it is an error,
/// so any query that escapes the federated rewrite fails loudly instead of reading rows.
#[derive(Debug)]
pub struct FederatedTable {
    pub contract: Contract,
    schema: SchemaRef,
}

impl FederatedTable {
    pub fn new(contract: &Contract) -> FederatedTable {
        FederatedTable {
            contract: contract.clone(),
            schema: contract.arrow_schema(),
        }
    }
}

/// The error for a query that reads a federated table's rows without aggregating them.
pub fn rows_never_leave(table: &str) -> DataFusionError {
    DataFusionError::Plan(format!(
        "the query reads individual rows of {table}, and rows never leave a trust. Aggregate them instead, \
         e.g. SELECT provider_code, count(*), avg(…) FROM {table} GROUP BY provider_code"
    ))
}

#[async_trait]
impl TableProvider for FederatedTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(rows_never_leave(&self.contract.name))
    }
}

/// Registers every contract table: federated tables as [`FederatedTable`], public ones in memory.
pub fn register_federated(ctx: &SessionContext, catalog: &Catalog) -> Result<()> {
    for contract in catalog.contracts() {
        if contract.public {
            register_public(ctx, catalog, contract)?;
        } else {
            ctx.register_table(contract.name.as_str(), Arc::new(FederatedTable::new(contract)))?;
        }
    }
    Ok(())
}
