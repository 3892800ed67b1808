//! The `tessera` command as a user runs it: exit codes, messages on stderr, files on disk.

use std::path::Path;

mod query;
mod service;
mod support;
mod trust;

use support::{assert_clean_error, gen, stderr, stdout, tessera};

#[test]
fn gen_is_deterministic_and_writes_a_node_config_per_trust() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let first = gen(a.path(), "7");
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("generated"), "{}", stdout(&first));
    assert!(gen(b.path(), "7").status.success());
    for trust in ["RRK", "RJ1"] {
        for table in [
            "apc_episodes",
            "ec_attendances",
            "op_appointments",
            "workforce_finance_monthly",
        ] {
            let file = format!("{trust}/{table}.parquet");
            assert_eq!(
                std::fs::read(a.path().join(&file)).unwrap(),
                std::fs::read(b.path().join(&file)).unwrap(),
                "{file}"
            );
        }
        let config = std::fs::read_to_string(a.path().join(trust).join("node.toml")).unwrap();
        assert!(
            config.contains(&format!("name = \"{trust}\"")) && config.contains("listen = \"127.0.0.1:"),
            "{config}"
        );
    }
    let port = |dir: &Path, trust: &str| {
        let text = std::fs::read_to_string(dir.join(trust).join("node.toml")).unwrap();
        text.lines().find(|l| l.starts_with("listen")).unwrap().to_string()
    };
    assert_ne!(
        port(a.path(), "RRK"),
        port(a.path(), "RJ1"),
        "each trust gets its own port"
    );
}

#[test]
fn bad_arguments_and_configs_exit_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let out = tessera(&["gen", "--out", dir.path().to_str().unwrap(), "--providers", "RRK,XYZ"]);
    assert_clean_error(
        &out,
        1,
        "--providers: `XYZ` is not an ODS provider code in the contract",
    );

    let missing = dir.path().join("nope.toml");
    let out = tessera(&["node", "--config", missing.to_str().unwrap()]);
    assert_clean_error(&out, 2, &format!("{}: cannot read:", missing.display()));

    let out = tessera(&["audit", "verify", missing.to_str().unwrap()]);
    assert_clean_error(&out, 2, &missing.display().to_string());

    let out = tessera(&["ask", "--node", "http://127.0.0.1:9", "-c", "SELECT 1"]);
    assert_clean_error(&out, 2, "cannot connect to http://127.0.0.1:9");
}
