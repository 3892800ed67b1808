//! The `tessera` command as a user runs it: exit codes, messages on stderr, files on disk.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("tessera runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A user mistake never shows a panic or a backtrace.
fn assert_clean_error(output: &Output, code: i32, message: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(message), "{err}\nshould contain: {message}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

fn gen(out: &Path, seed: &str) -> Output {
    tessera(&[
        "gen",
        "--out",
        out.to_str().unwrap(),
        "--providers",
        "RRK,RJ1",
        "--rows",
        "3000",
        "--seed",
        seed,
    ])
}

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

struct NodeProcess(Child);

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(addr: &str) {
    let started = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node did not start on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_node_answers_ask_refuses_rows_and_its_audit_log_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    assert!(gen(dir.path(), "3").status.success());
    let config = dir.path().join("RRK").join("node.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let addr = text
        .lines()
        .find(|l| l.starts_with("listen"))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_string();
    let _node = NodeProcess(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["node", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&addr);
    let url = format!("http://{addr}");

    let out = tessera(&[
        "ask",
        "--node",
        &url,
        "-c",
        "SELECT count(*) AS episodes FROM apc_episodes",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("episodes") && stdout(&out).contains("(1 rows)"),
        "{}",
        stdout(&out)
    );

    let out = tessera(&["ask", "--node", &url, "-c", "SELECT person_id FROM apc_episodes"]);
    assert_clean_error(&out, 1, "refused: the query returns individual rows of apc_episodes");

    for i in 0..3 {
        let sql = format!("SELECT count(*) FROM apc_episodes WHERE los_days > {i}");
        assert!(tessera(&["ask", "--node", &url, "-c", &sql]).status.success());
    }
    let log = dir.path().join("RRK").join("audit.jsonl");
    let out = tessera(&["audit", "verify", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("intact, 5 entries"), "{}", stdout(&out));

    let lines = std::fs::read_to_string(&log).unwrap();
    let mut lines = lines.lines().map(str::to_string).collect::<Vec<_>>();
    lines[2] = lines[2].replace("los_days > 0", "los_days > 9");
    std::fs::write(&log, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let out = tessera(&["audit", "verify", log.to_str().unwrap()]);
    assert_clean_error(
        &out,
        1,
        &format!("audit log tampered: {}: line 3: was altered: its SHA-256 no longer matches the prev_hash recorded on line 4", log.display()),
    );
}
