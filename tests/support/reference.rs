//! A single DataFusion session over the union of several trusts' files: the reference every
//! federated answer must equal, and the baseline benchmarks compare against. Only for tests,
//! benchmarks and demos on synthetic data: a real federation never holds the union.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use tessera_schemas::Catalog;

/// Registers each contract table as the union of `<dir>/<table>.parquet` over `trust_dirs`.
pub fn union_session(trust_dirs: &[PathBuf], catalog: &Catalog) -> Result<SessionContext> {
    let ctx = tessera_policy::session::new_session(None)?;
    for contract in catalog.contracts() {
        if contract.public {
            tessera_policy::session::register_public(&ctx, catalog, contract)?;
            continue;
        }
        let urls = trust_dirs
            .iter()
            .map(|dir| {
                let path = dir.join(format!("{}.parquet", contract.name));
                let text = path
                    .to_str()
                    .ok_or_else(|| DataFusionError::Plan(format!("{} is not UTF-8", path.display())))?;
                ListingTableUrl::parse(text)
            })
            .collect::<Result<Vec<_>>>()?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_force_view_types(false)));
        let config = ListingTableConfig::new_with_multi_paths(urls)
            .with_listing_options(options)
            .with_schema(contract.arrow_schema());
        ctx.register_table(contract.name.as_str(), Arc::new(ListingTable::try_new(config)?))?;
    }
    Ok(ctx)
}
