//! `tessera query --server`: the CLI as a client of `tessera serve`, with the same formats,
//! scripts, EXPLAIN, messages and exit codes as in embedded mode.

use crate::support::{assert_clean_error, gen, start_node, start_service, stderr, stdout, tessera_with};

const PASSWORD: &str = "a long enough password";

#[test]
fn the_cli_signs_in_to_the_service_and_asks_with_the_usual_formats_messages_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    assert!(gen(dir.path(), "5").status.success());
    let users = dir.path().join("users.toml");
    let out = tessera_with(
        &[
            "user",
            "add",
            "--file",
            users.to_str().unwrap(),
            "alice",
            "--projects",
            "synthetic",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let _nodes = ["RRK", "RJ1"].map(|t| start_node(&dir.path().join(t).join("node.toml")).0);
    let (_service, addr) = start_service(&dir.path().join("federation.toml"));
    let url = format!("https://{addr}");
    let ca = dir.path().join("certs").join("ca.pem");
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "SELECT count(*) AS n FROM apc_episodes;\nSELECT person_id FROM apc_episodes;",
    )
    .unwrap();
    let query = |extra: &[&str], password: &str| {
        let mut args = vec!["query", "--server", &url, "--user", "alice"];
        args.extend(extra);
        tessera_with(
            &args,
            "",
            &[("TESSERA_PASSWORD", password), ("TESSERA_CA", ca.to_str().unwrap())],
        )
    };
    let by_sex = "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex ORDER BY sex";

    let out = query(&["-c", by_sex], PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("| sex |") && text.contains("(2 rows)"), "{text}");
    assert!(text.contains("2 of 2 trusts answered (RJ1, RRK)"), "{text}");
    assert!(text.contains("disclosure control: differential privacy"), "{text}");
    assert!(text.contains("RRK ρ = 0.05 (project 0.05 of 1)"), "{text}");

    // A researcher chooses the spend of a question, within each trust's cap.
    let by_age = "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band";
    let out = query(&["--spend", "0.2", "-c", by_age], PASSWORD);
    assert!(
        stdout(&out).contains("RRK ρ = 0.2 (project 0.25 of 1)"),
        "{}",
        stdout(&out)
    );
    assert_clean_error(
        &query(&["--spend", "0.3", "-c", by_age], PASSWORD),
        1,
        "a question may spend at most ρ = 0.25 at this trust; it asked for ρ = 0.3",
    );
    assert_clean_error(
        &query(&["--spend", "0", "-c", by_age], PASSWORD),
        2,
        "is not a privacy spend",
    );

    // The researcher reads the budget through the service, as each trust's ledger says.
    let budget = |extra: &[&str]| {
        let mut args = vec!["budget", "--server", &url, "--user", "alice"];
        args.extend(extra);
        tessera_with(
            &args,
            "",
            &[("TESSERA_PASSWORD", PASSWORD), ("TESSERA_CA", ca.to_str().unwrap())],
        )
    };
    let out = budget(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("privacy budget of project synthetic "), "{text}");
    for trust in ["RRK", "RJ1"] {
        let line = format!("{trust}: spent 0.25 of 1 (0.75 left) in 2 questions");
        assert!(text.contains(&line), "{text}");
    }
    assert_clean_error(
        &budget(&["--project", "another"]),
        1,
        "you may not ask for project `another`",
    );

    let out = query(&["--format", "csv", "-c", by_sex], PASSWORD);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("sex,n\nF,"), "{}", stdout(&out));
    assert!(stderr(&out).contains("2 of 2 trusts answered"), "{}", stderr(&out));

    let out = query(&["-c", "EXPLAIN SELECT count(*) FROM apc_episodes"], PASSWORD);
    assert!(
        stdout(&out).starts_with("Central plan (runs at the coordinator):"),
        "{}",
        stdout(&out)
    );

    // (arguments, password, exit code, message)
    let failures: &[(&[&str], &str, i32, &str)] = &[
        (
            &["-c", "SELECT person_id FROM apc_episodes"],
            PASSWORD,
            1,
            "the query reads individual rows of apc_episodes",
        ),
        (&["-c", by_sex], "not the password", 2, "wrong user name or password"),
        (
            &["-c", by_sex, "--project", "another"],
            PASSWORD,
            1,
            "you may not ask for project `another`",
        ),
        (
            &["-f", script.to_str().unwrap()],
            PASSWORD,
            3,
            "statement 2: the query reads individual rows",
        ),
    ];
    for (args, password, code, message) in failures {
        assert_clean_error(&query(args, password), *code, message);
    }
    // A password never goes in clear to another machine.
    let out = tessera_with(
        &[
            "query",
            "--server",
            "http://192.0.2.1:50060",
            "--user",
            "alice",
            "-c",
            "SELECT 1",
        ],
        "",
        &[("TESSERA_PASSWORD", PASSWORD)],
    );
    assert_clean_error(&out, 2, "a password is sent only over TLS");
}
