//! Contract loading and data validation, with the exact messages a data engineer sees.

use std::path::{Path, PathBuf};

use arrow::datatypes::{DataType, Field, Schema};
use tessera_schemas::{validate_schema, Catalog, ContractError, Role, SchemaSource};

fn files(extra: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
    let domains = r#"
[domains.sex]
description = "sex"
values = [{ code = "F" }, { code = "M" }]
"#;
    let mut out = vec![(PathBuf::from("c/domains.toml"), domains.to_string())];
    out.extend(extra.iter().map(|(p, t)| (PathBuf::from(p), t.to_string())));
    out
}

fn contract_with_column(column: &str) -> String {
    format!("[table]\nname = \"t\"\nversion = 1\n\n[[columns]]\n{column}\n")
}

#[test]
fn builtin_contracts_load_with_roles_domains_and_bounds() {
    let catalog = Catalog::builtin();
    let names = catalog.contracts().map(|c| c.name.as_str()).collect::<Vec<_>>();
    assert_eq!(
        names,
        [
            "apc_episodes",
            "ec_attendances",
            "op_appointments",
            "ref_unit_costs",
            "workforce_finance_monthly"
        ]
    );
    let apc = catalog.contract("apc_episodes").unwrap();
    assert_eq!(apc.columns.len(), 14);
    assert_eq!(
        apc.identifiers().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["person_id"]
    );
    let cost = apc.column("cost_gbp").unwrap();
    assert_eq!(
        (cost.role, cost.sensitive, cost.bounds),
        (Role::Measure, true, Some((0.0, 250_000.0)))
    );
    let method = apc.column("admission_method").unwrap();
    let domain = catalog.column_domain(method).unwrap();
    assert!(domain.contains("21") && domain.contains("11") && !domain.contains("99"));
    assert_eq!(domain.label("21"), Some("Emergency: via A&E"));
    let ec = catalog.contract("ec_attendances").unwrap();
    assert_eq!(
        ec.column("arrival_time").unwrap().data_type,
        DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None)
    );
    assert!(catalog.contract("ref_unit_costs").unwrap().public);
    assert_eq!(catalog.public_data("ref_unit_costs").unwrap().lines().count(), 43);
    assert!(catalog
        .contract("workforce_finance_monthly")
        .unwrap()
        .identifiers()
        .next()
        .is_none());
}

#[test]
fn unknown_arrow_type_is_named() {
    let text = contract_with_column("name = \"x\"\ntype = \"Int33\"\nrole = \"measure\"");
    let err = Catalog::from_files(&files(&[("c/t.toml", &text)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c/t.toml: column `x`: unknown Arrow type `Int33` (expected e.g. Utf8, Int32, Float64, Date32, Boolean, Timestamp(Microsecond, None))"
    );
}

#[test]
fn unknown_domain_is_named() {
    let text = contract_with_column("name = \"sex\"\ntype = \"Utf8\"\nrole = \"dimension\"\ndomain = \"gender\"");
    let err = Catalog::from_files(&files(&[("c/t.toml", &text)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c/t.toml: column `sex`: unknown domain `gender` (not defined in domains.toml)"
    );
}

#[test]
fn bounds_on_a_dimension_are_rejected() {
    let text = contract_with_column("name = \"sex\"\ntype = \"Utf8\"\nrole = \"dimension\"\nbounds = [0, 1]");
    let err = Catalog::from_files(&files(&[("c/t.toml", &text)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c/t.toml: column `sex`: only measures have bounds or `sensitive`, this column is a dimension"
    );
}

#[test]
fn unknown_key_and_bad_role_are_parse_errors() {
    let text = contract_with_column("name = \"x\"\ntype = \"Utf8\"\nrole = \"secret\"");
    let err = Catalog::from_files(&files(&[("c/t.toml", &text)])).unwrap_err();
    assert!(
        matches!(&err, ContractError::Parse { file, message } if file == Path::new("c/t.toml") && message.contains("unknown variant `secret`")),
        "{err}"
    );
    let text = contract_with_column("name = \"x\"\ntype = \"Utf8\"\nrole = \"dimension\"\ncolour = 1");
    let err = Catalog::from_files(&files(&[("c/t.toml", &text)])).unwrap_err();
    assert!(err.to_string().contains("unknown field `colour`"), "{err}");
}

#[test]
fn public_table_cannot_hold_identifiers() {
    let text = "[table]\nname = \"t\"\nversion = 1\npublic = true\n\n[[columns]]\nname = \"id\"\ntype = \"Utf8\"\nrole = \"identifier\"\n";
    let err = Catalog::from_files(&files(&[("c/t.toml", text)])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c/t.toml: invalid contract: a public table cannot have identifier columns"
    );
}

fn apc_schema_with(replace: &str, data_type: Option<DataType>) -> Schema {
    let catalog = Catalog::builtin();
    let contract = catalog.contract("apc_episodes").unwrap();
    Schema::new(
        contract
            .columns
            .iter()
            .filter_map(|c| {
                if c.name != replace {
                    return Some(Field::new(&c.name, c.data_type.clone(), true));
                }
                data_type.clone().map(|t| Field::new(&c.name, t, true))
            })
            .collect::<Vec<_>>(),
    )
}

#[test]
fn data_file_with_missing_column_names_file_column_and_expected_type() {
    let catalog = Catalog::builtin();
    let contract = catalog.contract("apc_episodes").unwrap();
    let found = apc_schema_with("cost_gbp", None);
    let err = validate_schema(contract, Path::new("data/RRK/apc.parquet"), &found, SchemaSource::Named).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data/RRK/apc.parquet: column `cost_gbp` is missing (contract apc_episodes expects Float64)"
    );
}

#[test]
fn data_file_with_wrong_type_names_expected_and_found() {
    let catalog = Catalog::builtin();
    let contract = catalog.contract("apc_episodes").unwrap();
    let found = apc_schema_with("los_days", Some(DataType::Utf8));
    let err = validate_schema(contract, Path::new("apc.parquet"), &found, SchemaSource::Named).unwrap_err();
    assert_eq!(
        err.to_string(),
        "apc.parquet: column `los_days` has type Utf8, but contract apc_episodes expects Int32"
    );
}

#[test]
fn string_encodings_are_interchangeable_and_extra_parquet_columns_are_ignored() {
    let catalog = Catalog::builtin();
    let contract = catalog.contract("apc_episodes").unwrap();
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let mut fields = apc_schema_with("sex", Some(dict)).fields().to_vec();
    fields.push(std::sync::Arc::new(Field::new("local_extra", DataType::Utf8, true)));
    validate_schema(
        contract,
        Path::new("apc.parquet"),
        &Schema::new(fields),
        SchemaSource::Named,
    )
    .unwrap();
}

#[test]
fn csv_columns_must_follow_the_contract_order() {
    let catalog = Catalog::builtin();
    let contract = catalog.contract("workforce_finance_monthly").unwrap();
    let names = [
        "provider_code",
        "staff_group",
        "month",
        "fte",
        "pay_cost_gbp",
        "non_pay_cost_gbp",
    ];
    let found = Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    );
    let err = validate_schema(contract, Path::new("wf.csv"), &found, SchemaSource::Positional).unwrap_err();
    assert_eq!(
        err.to_string(),
        "wf.csv: column 2 is `staff_group`, but contract workforce_finance_monthly expects `month` there (CSV columns must follow the contract's order)"
    );
    let mut extra = contract
        .columns
        .iter()
        .map(|c| Field::new(&c.name, DataType::Utf8, true))
        .collect::<Vec<_>>();
    extra.push(Field::new("note", DataType::Utf8, true));
    let err = validate_schema(
        contract,
        Path::new("wf.csv"),
        &Schema::new(extra),
        SchemaSource::Positional,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "wf.csv: column `note` is not in contract workforce_finance_monthly (CSV files must have exactly the contract's columns)"
    );
}
