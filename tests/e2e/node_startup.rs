//! A node refuses to start on bad configuration or data, naming the file, key or column.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use tessera_node::node::TrustNode;
use tessera_node::NodeConfig;
use tessera_schemas::Catalog;
use tessera_support::TestData;

async fn start_error(config: &NodeConfig) -> String {
    match TrustNode::start(config, &Catalog::builtin()).await {
        Ok(_) => panic!("the node started"),
        Err(e) => e.to_string(),
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn config_errors_name_the_file_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "node.toml",
        "[node]\nname = \"RRK\"\nlisten = \"127.0.0.1:1\"\naudit_log = \"a.jsonl\"\ncolour = \"blue\"\n",
    );
    let err = NodeConfig::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: invalid configuration (line 5): unknown field `colour`",
            path.display()
        )),
        "{err}"
    );

    let path = write(dir.path(), "bad_listen.toml", "[node]\nname = \"RRK\"\nlisten = \"localhost\"\naudit_log = \"a.jsonl\"\n[[tables]]\nname = \"apc_episodes\"\nlocation = \"x\"\nformat = \"parquet\"\n");
    assert_eq!(
        NodeConfig::load(&path).unwrap_err().to_string(),
        format!(
            "{}: [node] listen: `localhost` is not an address like 127.0.0.1:50051",
            path.display()
        )
    );

    let path = write(
        dir.path(),
        "no_tables.toml",
        "[node]\nname = \"RRK\"\nlisten = \"127.0.0.1:1\"\naudit_log = \"a.jsonl\"\n",
    );
    assert_eq!(
        NodeConfig::load(&path).unwrap_err().to_string(),
        format!(
            "{}: [[tables]]: no tables configured; a node needs at least one",
            path.display()
        )
    );

    let path = write(dir.path(), "bad_format.toml", "[node]\nname = \"RRK\"\nlisten = \"127.0.0.1:1\"\naudit_log = \"a.jsonl\"\n[[tables]]\nname = \"apc_episodes\"\nlocation = \"x\"\nformat = \"xlsx\"\n");
    let err = NodeConfig::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: invalid configuration (line 8): unknown variant `xlsx`, expected `parquet` or `csv`",
            path.display()
        )),
        "{err}"
    );

    let missing = dir.path().join("missing.toml");
    let err = NodeConfig::load(&missing).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: cannot read: No such file or directory",
            missing.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn bad_tables_and_policies_stop_the_node_with_a_precise_message() {
    let data = TestData::generate(&["RTH"], 500, 3);
    let dir = data.trust_dir("RTH");
    let source = dir.join("node.toml");
    let source = source.display();

    let config = data.node_config("RTH", |c| c.tables[0].location = "missing.parquet".into());
    let err = start_error(&config).await;
    assert_eq!(
        err,
        format!(
            "{source}: [[tables]] `apc_episodes` location: `missing.parquet` (resolved to {}): No such file or directory (os error 2)",
            dir.join("missing.parquet").display()
        )
    );

    let config = data.node_config("RTH", |c| c.tables[0].name = "patients".into());
    assert_eq!(
        start_error(&config).await,
        format!("{source}: [[tables]] `patients`: no contract defines this table (known: apc_episodes, ec_attendances, op_appointments, workforce_finance_monthly)")
    );

    let config = data.node_config("RTH", |c| {
        c.policy.aggregate_functions.insert("median_of_everything".into());
    });
    assert_eq!(
        start_error(&config).await,
        format!("{source}: [policy] aggregate_functions: unknown aggregate function `median_of_everything`")
    );

    let config = data.node_config("RTH", |c| {
        c.policy.denied_columns.insert("apc_episodes.nhs_number".into());
    });
    assert_eq!(
        start_error(&config).await,
        format!("{source}: [policy] denied_columns: `apc_episodes.nhs_number` is not a column of a served table (write it as table.column)")
    );

    // A data file whose column has the wrong type.
    let wrong = dir.join("wrong_types.parquet");
    let mut fields = Catalog::builtin()
        .contract("workforce_finance_monthly")
        .unwrap()
        .arrow_schema()
        .fields()
        .to_vec();
    fields[3] = Arc::new(Field::new("fte", DataType::Utf8, false));
    let schema = Arc::new(Schema::new(fields));
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 0))
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&wrong).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let config = data.node_config("RTH", |c| c.tables[3].location = "wrong_types.parquet".into());
    assert_eq!(
        start_error(&config).await,
        format!("{source}: [[tables]] `workforce_finance_monthly`: wrong_types.parquet: column `fte` has type Utf8, but contract workforce_finance_monthly expects Float64")
    );

    // A CSV whose header is out of the contract's order.
    let csv = write(
        &dir,
        "wf.csv",
        "provider_code,staff_group,month,fte,pay_cost_gbp,non_pay_cost_gbp\nRTH,nursing,2024-04-01,1.0,2.0,3.0\n",
    );
    let config = data.node_config("RTH", |c| {
        c.tables[3].location = csv.display().to_string();
        c.tables[3].format = tessera_node::config::TableFormat::Csv;
    });
    assert_eq!(
        start_error(&config).await,
        format!("{source}: [[tables]] `workforce_finance_monthly`: {}: column 2 is `staff_group`, but contract workforce_finance_monthly expects `month` there (CSV columns must follow the contract's order)", csv.display())
    );
}
