//! The `tessera` command as a user runs it: exit codes, messages on stderr, files on disk.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        // Default release logs go under here, not into the user's home.
        .env("XDG_DATA_HOME", std::env::temp_dir().join("tessera-cli-tests"))
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
    let error_line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    assert!(error_line.contains(message), "{err}\nshould contain: {message}");
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

/// Runs `tessera node` for `config` and waits until it listens; returns the process and its address.
fn start_node(config: &Path) -> (NodeProcess, String) {
    let text = std::fs::read_to_string(config).unwrap();
    let listen = text.lines().find(|l| l.starts_with("listen")).expect("listen key");
    let addr = listen.split('"').nth(1).expect("quoted address").to_string();
    let node = NodeProcess(
        Command::new(env!("CARGO_BIN_EXE_tessera"))
            .args(["node", "--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&addr);
    (node, addr)
}

/// Runs `tessera` with `stdin` on its standard input and `env` set.
fn tessera_with(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_node_answers_its_analysts_through_disclosure_control_turns_away_everyone_else_and_audits_both() {
    let dir = tempfile::tempdir().unwrap();
    assert!(gen(dir.path(), "3").status.success());
    let users = dir.path().join("RRK").join("users.toml");
    let users = users.to_str().unwrap();
    let out = tessera_with(
        &["user", "add", "--file", users, "alice", "--password-stdin"],
        "a long enough password\n",
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tessera(&["user", "list", "--file", users]);
    assert_eq!(stdout(&out), "alice\n");
    assert!(!std::fs::read_to_string(users)
        .unwrap()
        .contains("a long enough password"));
    let (_node, addr) = start_node(&dir.path().join("RRK").join("node.toml"));
    let url = format!("https://{addr}");
    let ca = dir.path().join("certs").join("ca.pem");
    let ca = ca.to_str().unwrap();
    let ask = |sql: &str, user: Option<&str>, password: &str| {
        let mut args = vec!["ask", "--node", &url, "--ca", ca, "-c", sql];
        if let Some(user) = user {
            args.extend(["--user", user]);
        }
        tessera_with(&args, "", &[("TESSERA_PASSWORD", password)])
    };

    // The trailing newline on stdin was not part of the password.
    let out = ask(
        "SELECT count(*) AS episodes FROM apc_episodes",
        Some("alice"),
        "a long enough password",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("episodes") && stdout(&out).contains("(1 rows)"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("disclosure control: "), "{}", stdout(&out));

    let out = ask(
        "SELECT person_id FROM apc_episodes",
        Some("alice"),
        "a long enough password",
    );
    assert_clean_error(
        &out,
        1,
        "the query reads individual rows of apc_episodes, and rows never leave a trust",
    );
    let out = ask("SELECT count(*) FROM apc_episodes", Some("alice"), "not her password");
    assert_clean_error(&out, 1, "wrong user name or password");
    let out = ask("SELECT count(*) FROM apc_episodes", None, "");
    assert_clean_error(&out, 1, "no credentials");
    // Plaintext to a TLS node gets no answer at all.
    let out = tessera(&["ask", "--node", &format!("http://{addr}"), "-c", "SELECT 1"]);
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("(1 rows)"));

    let log = dir.path().join("RRK").join("audit.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let entries = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect::<Vec<_>>();
    let who = |e: &serde_json::Value| format!("{} {} {}", e["role"], e["principal"], e["decision"]);
    let outer = entries
        .iter()
        .filter(|e| e["call"] != "protected fragment")
        .map(who)
        .collect::<Vec<_>>();
    assert_eq!(
        outer,
        [
            r#""analyst" "alice" "allowed""#,
            r#""analyst" "alice" "refused""#,
            r#""unauthenticated" "user alice" "refused""#,
            r#""unauthenticated" "anonymous" "refused""#,
        ],
        "{text}"
    );
    let out = tessera(&["audit", "verify", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("intact, {} entries", entries.len())),
        "{}",
        stdout(&out)
    );

    // The governance summary: per caller and project, allowed / refused / errors.
    let out = tessera(&["audit", "show", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = stdout(&out);
    let row = |start: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no row {start:?} in\n{summary}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(row("analyst")[1..7], ["alice", "alice", "RRK-analysts", "1", "1", "0"]);
    assert!(summary.contains("Refused or failed:"), "{summary}");
    let out = tessera(&["audit", "show", log.to_str().unwrap(), "--project", "nothing"]);
    assert!(stdout(&out).contains("no requests match"), "{}", stdout(&out));

    let mut lines = text.lines().map(str::to_string).collect::<Vec<_>>();
    lines[2] = lines[2].replace("alice", "carol");
    std::fs::write(&log, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let out = tessera(&["audit", "verify", log.to_str().unwrap()]);
    assert_clean_error(
        &out,
        1,
        &format!("audit log tampered: {}: line 3: was altered: its SHA-256 no longer matches the prev_hash recorded on line 4", log.display()),
    );
}

/// Two trusts' nodes running as processes, and a federation file for them.
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

#[test]
fn the_federation_gen_writes_works_as_is_over_mutual_tls_with_its_release_log() {
    let dir = tempfile::tempdir().unwrap();
    assert!(gen(dir.path(), "5").status.success());
    let config = dir.path().join("federation.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("url = \"https://127.0.0.1:"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("certs").join("coordinator-key.pem")), 0o600);
        assert_eq!(mode(&dir.path().join("certs").join("RRK-key.pem")), 0o600);
    }
    let mut nodes = Vec::new();
    for trust in ["RRK", "RJ1"] {
        let node_toml = std::fs::read_to_string(dir.path().join(trust).join("node.toml")).unwrap();
        assert!(
            node_toml.contains("coordinator_subject = \"CN=tessera-coordinator, O=Tessera development\""),
            "{node_toml}"
        );
        assert!(node_toml.contains("users = \"users.toml\""), "{node_toml}");
        nodes.push(start_node(&dir.path().join(trust).join("node.toml")).0);
    }

    // A sensitive mean needs the dominance check, which the trusts answer for their coordinator.
    let sql =
        "SELECT sex, count(*) AS n, round(avg(cost_gbp)) AS mean_cost FROM apc_episodes GROUP BY sex ORDER BY sex";
    let query = |config: &Path| {
        tessera(&[
            "query",
            "--config",
            config.to_str().unwrap(),
            "-c",
            sql,
            "--format",
            "csv",
        ])
    };
    let out = query(&config);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = stdout(&out);
    let lines = csv.lines().collect::<Vec<_>>();
    assert_eq!(lines[0], "sex,n,mean_cost");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1..].iter().all(|l| l.split(',').all(|v| !v.is_empty())),
        "large cells are released: {csv}"
    );
    assert!(stderr(&out).contains("disclosure control: "), "{}", stderr(&out));
    let log = std::fs::read_to_string(dir.path().join("release-log.jsonl")).unwrap();
    assert!(log.contains("GROUP BY apc_episodes.sex"), "{log}");

    // A trust's node key, signed by the same CA, is not the coordinator's: the trusts turn it away.
    let forged = dir.path().join("forged.toml");
    std::fs::write(
        &forged,
        text.replace("certs/coordinator.pem", "certs/RRK.pem")
            .replace("certs/coordinator-key.pem", "certs/RRK-key.pem"),
    )
    .unwrap();
    let out = query(&forged);
    assert_clean_error(&out, 1, "turned this coordinator away");
    drop(nodes);
}
