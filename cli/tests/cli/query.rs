//! `tessera query` against two trusts' nodes: formats, exit codes, errors.

use std::process::{Command, Stdio};

use crate::support::{assert_clean_error, start_node, stderr, stdout, tessera, NodeProcess};

struct TwoTrusts {
    dir: tempfile::TempDir,
    _nodes: Vec<NodeProcess>,
    config: std::path::PathBuf,
    episodes: u64,
}

fn two_trusts() -> TwoTrusts {
    let dir = tempfile::tempdir().unwrap();
    let out = tessera(&[
        "gen",
        "--out",
        dir.path().to_str().unwrap(),
        "--providers",
        "RRK,RJ1",
        "--rows",
        "2000",
        "--seed",
        "9",
        // Exact answers for these tests: the trusts send exact partials, the coordinator runs with
        // disclosure control off.
        "--privacy",
        "sdc",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let episodes = stdout(&out)
        .lines()
        .filter_map(|l| l.split(": ").nth(1)?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    let mut nodes = Vec::new();
    let mut entries = String::new();
    for trust in ["RRK", "RJ1"] {
        let (node, addr) = start_node(&dir.path().join(trust).join("node.toml"));
        nodes.push(node);
        entries.push_str(&format!("[[nodes]]\nname = \"{trust}\"\nurl = \"https://{addr}\"\n\n"));
    }
    let config = dir.path().join("federation.toml");
    std::fs::write(
        &config,
        format!("[federation]\nrequester = \"cli-test\"\nproject = \"synthetic\"\n\n{TLS}\n[disclosure]\nmode = \"off\"\nallow_unsafe_output = true\n\n{entries}"),
    )
    .unwrap();
    TwoTrusts {
        dir,
        _nodes: nodes,
        config,
        episodes,
    }
}

/// The `[tls]` section `tessera gen` writes (paths relative to the federation file).
const TLS: &str =
    "[tls]\nca = \"certs/ca.pem\"\ncert = \"certs/coordinator.pem\"\nkey = \"certs/coordinator-key.pem\"\n";

const BY_SEX: &str = "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex ORDER BY sex";

#[test]
fn query_writes_every_format_and_uses_psql_exit_codes() {
    let fed = two_trusts();
    let config = fed.config.to_str().unwrap();
    let query = |extra: &[&str]| {
        let mut args = vec!["query", "--config", config];
        args.extend_from_slice(extra);
        tessera(&args)
    };

    // CSV: exact header; the two groups add up to every episode generated.
    let out = query(&["-c", BY_SEX, "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = stdout(&out);
    let lines = csv.lines().collect::<Vec<_>>();
    assert_eq!(lines[0], "sex,n");
    assert_eq!(lines.len(), 3, "{csv}");
    let total: u64 = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, fed.episodes);
    assert!(lines[1].starts_with("F,") && lines[2].starts_with("M,"));
    // Generated nodes report the day their files were written as their data's as-at date.
    let err = stderr(&out);
    let (provenance, disclosure) = err.trim().split_once('\n').unwrap();
    assert!(
        provenance.starts_with("2 of 2 trusts answered (RJ1, RRK); data as at 20"),
        "{provenance}"
    );
    assert_eq!(
        disclosure,
        "disclosure control: WARNING: disclosure control is OFF (allow_unsafe_output): exact counts, small cells included"
    );

    let out = query(&["-c", BY_SEX, "--format", "tsv"]);
    assert_eq!(stdout(&out).lines().next(), Some("sex\tn"));

    let out = query(&["-c", BY_SEX, "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["sex"], "F");
    assert_eq!(
        json[0]["n"].as_u64().unwrap() + json[1]["n"].as_u64().unwrap(),
        fed.episodes
    );

    let out = query(&["-c", BY_SEX, "--format", "ndjson"]);
    let rows = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect::<Vec<_>>();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["sex"], "M");

    let out = query(&["-c", BY_SEX]);
    let table = stdout(&out);
    assert!(
        table.contains("| sex | n ") && table.contains("(2 rows)") && table.contains("2 of 2 trusts answered"),
        "{table}"
    );

    for (format, magic) in [("arrow", &b"ARROW1"[..]), ("parquet", &b"PAR1"[..])] {
        let file = fed.dir.path().join(format!("result.{format}"));
        let out = query(&["-c", BY_SEX, "--format", format, "-o", file.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            bytes.starts_with(magic) && bytes.ends_with(magic),
            "{format} file is not {format}"
        );
    }

    // Exit codes: 1 query error, 2 connection/configuration error, 3 script error.
    let out = query(&["-c", "SELECT * FROM apc_episodes"]);
    assert_clean_error(
        &out,
        1,
        "the query reads individual rows of apc_episodes, and rows never leave a trust",
    );
    assert!(stdout(&out).is_empty());
    let out = query(&["-c", "SELECT max(cost_gbp) FROM apc_episodes"]);
    assert_clean_error(&out, 1, "max(cost_gbp) would release one patient's exact value");

    let dead = fed.dir.path().join("dead.toml");
    std::fs::write(
        &dead,
        format!("{TLS}\n[[nodes]]\nname = \"RTH\"\nurl = \"https://127.0.0.1:9\"\n"),
    )
    .unwrap();
    let out = tessera(&[
        "query",
        "--config",
        dead.to_str().unwrap(),
        "-c",
        "SELECT count(*) FROM apc_episodes",
    ]);
    assert_clean_error(&out, 2, "RTH unreachable (connection refused)");
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["query", "-c", "SELECT 1"])
        .env_remove("TESSERA_CONFIG")
        .env("HOME", fed.dir.path())
        .output()
        .unwrap();
    assert_clean_error(
        &out,
        2,
        "no federation configuration: pass --config FILE, set TESSERA_CONFIG",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args([
            "query",
            "-c",
            "SELECT count(*) AS n FROM apc_episodes",
            "--format",
            "csv",
        ])
        .env("TESSERA_CONFIG", &fed.config)
        .output()
        .unwrap();
    assert_eq!(stdout(&out), format!("n\n{}\n", fed.episodes));

    // Scripts: every statement runs; a malformed or failing script exits 3 naming the statement.
    let script = fed.dir.path().join("ok.sql");
    std::fs::write(&script, "SELECT count(*) AS n FROM apc_episodes;\n-- by sex\nSELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex;\n").unwrap();
    let out = query(&["-f", script.to_str().unwrap(), "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines = text.lines().collect::<Vec<_>>();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        (lines[0], lines[1], lines[2]),
        ("n", fed.episodes.to_string().as_str(), "sex,n")
    );

    let broken = fed.dir.path().join("broken.sql");
    std::fs::write(&broken, "SELECT count(*) FROM apc_episodes;\nSELEC oops;\n").unwrap();
    let out = query(&["-f", broken.to_str().unwrap()]);
    assert_clean_error(&out, 3, &format!("{}: syntax error:", broken.display()));
    assert!(stdout(&out).is_empty(), "a malformed script runs nothing");

    let failing = fed.dir.path().join("failing.sql");
    std::fs::write(
        &failing,
        "SELECT count(*) FROM apc_episodes;\nSELECT * FROM apc_episodes;\nSELECT 1;\n",
    )
    .unwrap();
    let out = query(&["-f", failing.to_str().unwrap(), "--format", "csv"]);
    assert_clean_error(
        &out,
        3,
        &format!("{}: statement 2: the query reads individual rows", failing.display()),
    );
    assert_eq!(
        stdout(&out).lines().count(),
        2,
        "the first statement's result, then the script stops"
    );

    let out = query(&["-f", fed.dir.path().join("missing.sql").to_str().unwrap()]);
    assert_clean_error(&out, 3, "missing.sql");

    // The interactive prompt reads multi-line SQL up to `;` and backslash commands.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["query", "--config", config])
        .env("HOME", fed.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"\\d\n\\d apc_episodes\nSELECT count(*) AS n\nFROM apc_episodes;\n\\timing\nSELECT * FROM apc_episodes;\n\\q\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("| ref_unit_costs            | public reference"),
        "{text}"
    );
    assert!(
        text.contains("| person_id           | Utf8    | identifier | never leaves a trust"),
        "{text}"
    );
    assert!(
        text.contains(&format!("| {} ", fed.episodes)) && text.contains("Timing is on."),
        "{text}"
    );
    assert!(
        stderr(&out).contains("error: the query reads individual rows of apc_episodes"),
        "{}",
        stderr(&out)
    );

    // EXPLAIN shows the fragment each trust receives.
    let out = query(&["-c", "EXPLAIN SELECT count(*) FROM apc_episodes"]);
    assert!(
        stdout(&out).contains("Fragment 1 (sent to RRK, RJ1):\n  SELECT count(1) AS p0 FROM apc_episodes"),
        "{}",
        stdout(&out)
    );
}
