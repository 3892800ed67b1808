//! `\d` and `\d TABLE`: the shared contracts, as a researcher needs them.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use tessera_schemas::{Catalog, Role};

/// A text table of string cells.
fn render(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let schema = Schema::new(
        headers
            .iter()
            .map(|h| Field::new(*h, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    );
    let columns = (0..headers.len())
        .map(|i| Arc::new(StringArray::from(rows.iter().map(|r| r[i].clone()).collect::<Vec<_>>())) as ArrayRef)
        .collect::<Vec<_>>();
    RecordBatch::try_new(Arc::new(schema), columns)
        .and_then(|batch| pretty_format_batches(&[batch]).map(|t| t.to_string()))
        .unwrap_or_else(|e| e.to_string())
}

/// Every table: name, where its rows live, and what it holds.
pub fn tables(catalog: &Catalog) -> String {
    let rows = catalog
        .contracts()
        .map(|c| {
            vec![
                c.name.clone(),
                if c.public {
                    "public reference".into()
                } else {
                    "federated (rows stay at each trust)".into()
                },
                c.description.clone(),
            ]
        })
        .collect();
    render(&["table", "kind", "description"], rows)
}

/// One table's columns with types, roles and domains.
pub fn table(catalog: &Catalog, name: &str) -> String {
    let Ok(contract) = catalog.contract(name) else {
        let known = catalog
            .contracts()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return format!("no table {name} (tables: {known})");
    };
    let rows = contract
        .columns
        .iter()
        .map(|c| {
            let detail = match (c.role, &c.domain, c.bounds) {
                (Role::Identifier, _, _) => "never leaves a trust; count it or join on it".to_string(),
                (_, Some(domain), _) => {
                    let codes = catalog
                        .domain(domain)
                        .map(|d| d.codes().collect::<Vec<_>>())
                        .unwrap_or_default();
                    let shown = codes.iter().take(8).copied().collect::<Vec<_>>().join(", ");
                    let more = if codes.len() > 8 {
                        format!(", … ({} values)", codes.len())
                    } else {
                        String::new()
                    };
                    format!("{domain}: {shown}{more}")
                }
                (_, None, Some((lo, hi))) => {
                    format!(
                        "{lo} to {hi}{}",
                        if c.sensitive { "; sensitive: no min/max" } else { "" }
                    )
                }
                _ => String::new(),
            };
            vec![
                c.name.clone(),
                c.data_type.to_string(),
                c.role.to_string(),
                detail,
                c.description.clone(),
            ]
        })
        .collect();
    format!(
        "{} (v{}): {}\n{}",
        contract.name,
        contract.version,
        contract.description,
        render(&["column", "type", "role", "domain / bounds", "description"], rows)
    )
}
