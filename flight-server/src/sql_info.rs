//! What a Tessera server tells generic Flight SQL clients about itself (`GetSqlInfo`).

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::SqlInfo;

use tessera_protocol::PROTOCOL_VERSION;

/// The `GetSqlInfo` answers of the server called `server_name`.
pub fn build(server_name: &str) -> SqlInfoData {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, server_name);
    b.append(
        SqlInfo::FlightSqlServerVersion,
        format!("{} ({PROTOCOL_VERSION})", env!("CARGO_PKG_VERSION")).as_str(),
    );
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.build().expect("static SqlInfo values are valid")
}
