//! Flight SQL's metadata commands, answered from the shared contracts — catalogs, schemas,
//! tables (with their Arrow schemas), table types and the SQL types — the same way by the trust
//! node and by the service, so a BI tool browses both alike. None of them touches patient data.

use arrow_flight::sql::metadata::{XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder};
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo, Nullable,
    Searchable, XdbcDataType,
};
use datafusion::arrow::record_batch::RecordBatch;
use tessera_protocol::names::{CATALOG, SCHEMA};
use tessera_schemas::Contract;
use tonic::Status;

/// The table type of a contract: public reference tables are views, federated ones tables.
fn table_type(contract: &Contract) -> &'static str {
    if contract.public {
        "VIEW"
    } else {
        "TABLE"
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// `GetCatalogs`: the one catalog.
pub fn catalogs(query: CommandGetCatalogs) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    builder.append(CATALOG);
    builder.build().map_err(internal)
}

/// `GetDbSchemas`: the one schema (filters apply).
pub fn schemas(query: CommandGetDbSchemas) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    builder.append(CATALOG, SCHEMA);
    builder.build().map_err(internal)
}

/// `GetTables`: every contract's table (filters apply; columns when `include_schema` is set).
pub fn tables<'a>(
    query: CommandGetTables,
    contracts: impl Iterator<Item = &'a Contract>,
) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    for contract in contracts {
        builder
            .append(
                CATALOG,
                SCHEMA,
                &contract.name,
                table_type(contract),
                &contract.arrow_schema(),
            )
            .map_err(internal)?;
    }
    builder.build().map_err(internal)
}

/// `GetTableTypes`: tables (federated) and views (public reference data).
pub fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    builder.append("TABLE");
    builder.append("VIEW");
    builder.build().map_err(internal)
}

/// `GetXdbcTypeInfo`: the SQL types the contracts' columns and answers use.
pub fn xdbc_type_info(query: CommandGetXdbcTypeInfo) -> Result<RecordBatch, Status> {
    query.into_builder(xdbc_types()).build().map_err(internal)
}

/// The types, built once.
pub fn xdbc_types() -> &'static XdbcTypeInfoData {
    static TYPES: std::sync::OnceLock<XdbcTypeInfoData> = std::sync::OnceLock::new();
    TYPES.get_or_init(|| {
        let mut builder = XdbcTypeInfoDataBuilder::new();
        let types = [
            ("BOOLEAN", XdbcDataType::XdbcBit, None, false),
            ("BIGINT", XdbcDataType::XdbcBigint, Some(19), false),
            ("DOUBLE", XdbcDataType::XdbcDouble, Some(15), false),
            ("DECIMAL", XdbcDataType::XdbcDecimal, Some(38), true),
            ("VARCHAR", XdbcDataType::XdbcVarchar, None, false),
            ("DATE", XdbcDataType::XdbcDate, Some(10), false),
            ("TIMESTAMP", XdbcDataType::XdbcTimestamp, Some(29), false),
        ];
        for (name, data_type, column_size, fixed_prec_scale) in types {
            let text = matches!(data_type, XdbcDataType::XdbcVarchar);
            builder.append(XdbcTypeInfo {
                type_name: name.to_string(),
                data_type,
                column_size,
                literal_prefix: text.then(|| "'".to_string()),
                literal_suffix: text.then(|| "'".to_string()),
                create_params: None,
                nullable: Nullable::NullabilityNullable,
                case_sensitive: text,
                searchable: Searchable::Full,
                unsigned_attribute: Some(false),
                fixed_prec_scale,
                auto_increment: Some(false),
                local_type_name: Some(name.to_string()),
                minimum_scale: None,
                maximum_scale: None,
                sql_data_type: data_type,
                datetime_subcode: None,
                num_prec_radix: (column_size.is_some() && !text).then_some(10),
                interval_precision: None,
            });
        }
        builder.build().expect("static type descriptions are valid")
    })
}
