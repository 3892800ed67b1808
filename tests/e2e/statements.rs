//! Statements that are not questions — writing files with `COPY … TO`, DDL, DML, `SET` — rows
//! made from nothing (`generate_series`) and values built far larger than the question
//! (`repeat`, `lpad`, `replace`): refused by the coordinator and by the pipeline a
//! node answers its analysts through, and nothing is written.

use tessera_protocol::FragmentRequest;
use tessera_support::{Federation, TestNode};

/// (what, SQL with `{dir}` for a folder the test owns)
const STATEMENTS: &[(&str, &str)] = &[
    (
        "COPY to a file",
        "COPY (VALUES ('ssh-ed25519 AAAA me')) TO '{dir}/owned.csv' STORED AS CSV",
    ),
    (
        "COPY of a query to a file",
        "COPY (SELECT count(*) FROM apc_episodes) TO '{dir}/owned.json' STORED AS JSON",
    ),
    (
        "an external table over a file",
        "CREATE EXTERNAL TABLE owned STORED AS CSV LOCATION '{dir}/owned.csv'",
    ),
    ("a view", "CREATE VIEW owned AS SELECT count(*) FROM apc_episodes"),
    ("an insert", "INSERT INTO apc_episodes SELECT * FROM apc_episodes"),
    ("a setting", "SET datafusion.execution.target_partitions = 1"),
    (
        "rows from nothing",
        "SELECT count(*) FROM generate_series(1, 3000000000)",
    ),
    // 4e9 built 16 GB at the centre before this was refused (a black-box attack); 1e8 here.
    ("a value from nothing", "SELECT length(repeat('x', 100000000))"),
    ("a padded value", "SELECT length(lpad('x', 100000000, 'y'))"),
    (
        "nested replacements",
        "SELECT length(replace(replace('xx', 'x', 'xxxxxxxxxxxxxxxx'), 'x', 'xxxxxxxxxxxxxxxx'))",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_are_not_questions_are_refused_and_write_nothing() {
    let fed = Federation::start_protected(&["RRK"], 500, 61).await;
    let node: &TestNode = &fed.nodes[0];
    let analyst = node.analyst().await;
    let dir = tempfile::tempdir().unwrap();
    let mut answered = Vec::new();
    for (what, sql) in STATEMENTS {
        let sql = sql.replace("{dir}", &dir.path().display().to_string());
        if fed.coordinator.query(&sql).await.is_ok() {
            answered.push(format!("coordinator: {what}"));
        }
        if analyst.query(&FragmentRequest::new(sql.as_str())).await.is_ok() {
            answered.push(format!("a trust's analyst: {what}"));
        }
    }
    assert!(answered.is_empty(), "answered: {answered:#?}");
    let written = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(written, 0, "files were written");
    // The node still answers questions.
    assert!(analyst
        .query(&FragmentRequest::new("SELECT count(*) FROM apc_episodes"))
        .await
        .is_ok());
}
