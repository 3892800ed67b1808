//! The trust boundary as a user meets it: analysts signing in at a node, everyone else turned
//! away, the coordinator's mutual TLS, and the audit log's summary.

use std::path::Path;

use crate::support::{assert_clean_error, gen, start_node, stderr, stdout, tessera, tessera_with};

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

#[test]
fn the_federation_gen_writes_works_as_is_over_mutual_tls_with_each_trust_s_privacy_ledger() {
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

    // A mean of a sensitive measure, noised at each trust for the coordinator it pins.
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
    assert!(stderr(&out).contains("privacy spent: RJ1 ρ = 0.05"), "{}", stderr(&out));
    // Each trust keeps its own account of what the project spent there.
    for trust in ["RRK", "RJ1"] {
        let ledger = std::fs::read_to_string(dir.path().join(trust).join("privacy-ledger.jsonl")).unwrap();
        assert!(
            ledger.contains("\"project\":\"synthetic\"") && ledger.contains("\"event\":\"reserve\""),
            "{ledger}"
        );
    }

    // The researcher reads the same accounts from the trusts.
    let out = tessera(&["budget", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for trust in ["RRK", "RJ1"] {
        let line = format!("{trust}: spent 0.05 of 1 (0.95 left) in 1 questions");
        assert!(stdout(&out).contains(&line), "{}", stdout(&out));
    }

    // The trust sees what each project spent there, from its own ledger beside its audit log.
    let log = dir.path().join("RRK").join("audit.jsonl");
    let out = tessera(&["audit", "show", log.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    let spent = shown
        .lines()
        .skip_while(|l| !l.starts_with("Privacy budget spent ("))
        .collect::<Vec<_>>();
    assert!(spent.len() >= 4, "{shown}");
    let row = spent[2].split_whitespace().collect::<Vec<_>>();
    assert_eq!(row[0], "synthetic", "{shown}");
    assert_eq!(row[row.len() - 3..], ["1", "0", "0.05"], "{shown}");
    assert_eq!(spent[3].trim(), "project synthetic: ρ = 0.05 spent in all", "{shown}");
    let out = tessera(&["audit", "show", log.to_str().unwrap(), "--project", "another"]);
    assert!(stdout(&out).contains("  nothing spent"), "{}", stdout(&out));
    let missing = dir.path().join("none.jsonl");
    assert_clean_error(
        &tessera(&[
            "audit",
            "show",
            log.to_str().unwrap(),
            "--ledger",
            missing.to_str().unwrap(),
        ]),
        1,
        "no such privacy ledger",
    );

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
