//! Registers a trust's tables with DataFusion, after checking each against its contract.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use object_store::aws::AmazonS3Builder;
use tessera_schemas::{validate_schema, Catalog, Contract, SchemaSource};
use url::Url;

use crate::config::{NodeConfig, TableFormat, TableSource};

/// Why a node could not register its tables; the text names the file, key or column.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TableError(pub String);

/// Registers every configured table and the public reference tables; returns the contracts served.
pub async fn register_all(
    ctx: &SessionContext,
    config: &NodeConfig,
    catalog: &Catalog,
) -> Result<BTreeMap<String, Contract>, TableError> {
    let mut served = BTreeMap::new();
    for source in &config.tables {
        let contract = contract_for(config, catalog, source)?;
        register_one(ctx, config, contract, source).await?;
        served.insert(contract.name.clone(), contract.clone());
    }
    for contract in catalog.contracts().filter(|c| c.public) {
        register_public(ctx, catalog, contract)?;
        served.insert(contract.name.clone(), contract.clone());
    }
    Ok(served)
}

fn contract_for<'c>(
    config: &NodeConfig,
    catalog: &'c Catalog,
    source: &TableSource,
) -> Result<&'c Contract, TableError> {
    let file = config.source.display();
    let contract = catalog.contract(&source.name).map_err(|_| {
        let known = catalog
            .contracts()
            .filter(|c| !c.public)
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        TableError(format!(
            "{file}: [[tables]] `{}`: no contract defines this table (known: {known})",
            source.name
        ))
    })?;
    if contract.public {
        return Err(TableError(format!(
            "{file}: [[tables]] `{}` is public reference data that ships with Tessera; remove it from [[tables]]",
            source.name
        )));
    }
    Ok(contract)
}

/// The URL of a table's data: local paths resolve against the config file's folder.
fn table_url(config: &NodeConfig, source: &TableSource) -> Result<(ListingTableUrl, bool), TableError> {
    let file = config.source.display();
    let bad = |message: String| TableError(format!("{file}: [[tables]] `{}` location: {message}", source.name));
    if source.location.contains("://") {
        let url =
            Url::parse(&source.location).map_err(|e| bad(format!("`{}` is not a valid URL: {e}", source.location)))?;
        let is_dir = url.path().ends_with('/');
        let parsed = ListingTableUrl::parse(url.as_str()).map_err(|e| bad(e.to_string()))?;
        return Ok((parsed, is_dir));
    }
    let path = config.resolve(&PathBuf::from(&source.location));
    let absolute = path
        .canonicalize()
        .map_err(|e| bad(format!("`{}` (resolved to {}): {e}", source.location, path.display())))?;
    let is_dir = absolute.is_dir();
    let mut text = absolute.to_string_lossy().to_string();
    if is_dir && !text.ends_with('/') {
        text.push('/');
    }
    let parsed = ListingTableUrl::parse(&text).map_err(|e| bad(e.to_string()))?;
    Ok((parsed, is_dir))
}

/// Makes an `s3://bucket/…` location readable, with credentials from the environment.
fn register_store(ctx: &SessionContext, config: &NodeConfig, source: &TableSource) -> Result<(), TableError> {
    let Ok(url) = Url::parse(&source.location) else {
        return Ok(());
    };
    match url.scheme() {
        "s3" => {
            let bucket = url.host_str().unwrap_or_default();
            let store = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| {
                    TableError(format!(
                        "{}: [[tables]] `{}`: cannot reach S3 bucket `{bucket}`: {e}",
                        config.source.display(),
                        source.name
                    ))
                })?;
            let base = Url::parse(&format!("s3://{bucket}")).expect("valid URL");
            ctx.register_object_store(&base, Arc::new(store));
            Ok(())
        }
        "file" => Ok(()),
        other => Err(TableError(format!(
            "{}: [[tables]] `{}`: unsupported location scheme `{other}://` (use a path, file:// or s3://)",
            config.source.display(),
            source.name
        ))),
    }
}

async fn register_one(
    ctx: &SessionContext,
    config: &NodeConfig,
    contract: &Contract,
    source: &TableSource,
) -> Result<(), TableError> {
    register_store(ctx, config, source)?;
    let (url, is_dir) = table_url(config, source)?;
    let (format, extension, layout): (Arc<dyn FileFormat>, &str, SchemaSource) = match source.format {
        TableFormat::Parquet => (
            // Text is read as Utf8, as the contracts say (not DataFusion's default Utf8View).
            Arc::new(ParquetFormat::default().with_force_view_types(false)),
            ".parquet",
            SchemaSource::Named,
        ),
        TableFormat::Csv => (
            Arc::new(CsvFormat::default().with_has_header(true)),
            ".csv",
            SchemaSource::Positional,
        ),
    };
    // A single named file is taken whatever its extension; a folder contributes its *.parquet / *.csv files.
    let options = ListingOptions::new(format).with_file_extension(if is_dir { extension } else { "" });
    let state = ctx.state();
    let found = options.infer_schema(&state, &url).await.map_err(|e| {
        TableError(format!(
            "{}: [[tables]] `{}`: cannot read {}: {e}",
            config.source.display(),
            source.name,
            source.location
        ))
    })?;
    validate_schema(contract, &PathBuf::from(&source.location), &found, layout).map_err(|e| {
        TableError(format!(
            "{}: [[tables]] `{}`: {e}",
            config.source.display(),
            source.name
        ))
    })?;
    let table_config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(contract.arrow_schema());
    let table = ListingTable::try_new(table_config).map_err(|e| TableError(e.to_string()))?;
    ctx.register_table(contract.name.as_str(), Arc::new(table))
        .map_err(|e| TableError(e.to_string()))?;
    Ok(())
}

/// Public reference tables ship with Tessera and are registered in memory at every node.
pub fn register_public(ctx: &SessionContext, catalog: &Catalog, contract: &Contract) -> Result<(), TableError> {
    tessera_policy::session::register_public(ctx, catalog, contract)
        .map_err(|e| TableError(format!("public table {}: {}", contract.name, e.strip_backtrace())))
}
