//! The audit chain detects an edited, removed, reordered, truncated or forged line.

use std::path::{Path, PathBuf};

use tessera_node::audit::{head_path, verify, AuditError, AuditLog, AuditRecord, Decision};
use tessera_protocol::RequestContext;

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        context: RequestContext::new("analyst@trust", "p1").with_query_id(format!("q{i}")),
        role: if i == 3 { "coordinator" } else { "analyst" }.into(),
        principal: if i == 3 { "CN=tessera-coordinator" } else { "alice" }.into(),
        profile: None,
        call: "DoGet".into(),
        sql: format!("SELECT count(*) FROM apc_episodes WHERE los_days > {i}"),
        decision: if i.is_multiple_of(2) {
            Decision::Allowed
        } else {
            Decision::Refused
        },
        reason: (!i.is_multiple_of(2)).then(|| "refused: test".to_string()),
        rows: i as u64,
    }
}

/// A log of five lines in a fresh folder.
fn five_line_log() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let log = AuditLog::open(&path).unwrap();
    for i in 1..=5 {
        log.append(record(i)).unwrap();
    }
    (dir, path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

fn tampered_at(path: &Path) -> (u64, String) {
    match verify(path) {
        Err(AuditError::Tampered { line, message, .. }) => (line, message),
        other => panic!("expected tampering to be detected, got {other:?}"),
    }
}

#[test]
fn an_intact_log_verifies_and_reopening_continues_the_chain() {
    let (_dir, path) = five_line_log();
    assert_eq!(verify(&path).unwrap().lines, 5);
    let log = AuditLog::open(&path).unwrap();
    let sixth = log.append(record(6)).unwrap();
    assert_eq!(sixth.seq, 6);
    let verified = verify(&path).unwrap();
    assert_eq!(verified.lines, 6);
    assert_eq!(verified.head_hash.len(), 64);
    assert!(lines(&path).iter().all(|l| l.contains("\"prev_hash\":\"")));
}

#[test]
fn an_edited_line_is_named() {
    let (_dir, path) = five_line_log();
    let mut l = lines(&path);
    l[2] = l[2].replace("los_days > 3", "los_days > 4");
    rewrite(&path, &l);
    assert_eq!(
        tampered_at(&path),
        (
            3,
            "was altered: its SHA-256 no longer matches the prev_hash recorded on line 4".to_string()
        )
    );
}

#[test]
fn an_edited_last_line_is_caught_by_the_head_file() {
    let (_dir, path) = five_line_log();
    let mut l = lines(&path);
    l[4] = l[4].replace("\"rows\":5", "\"rows\":0");
    rewrite(&path, &l);
    assert_eq!(
        tampered_at(&path),
        (
            5,
            "was altered: its SHA-256 no longer matches the head file".to_string()
        )
    );
}

#[test]
fn a_removed_line_is_named() {
    let (_dir, path) = five_line_log();
    let mut l = lines(&path);
    l.remove(2);
    rewrite(&path, &l);
    assert_eq!(
        tampered_at(&path),
        (
            3,
            "has sequence number 4, expected 3: a line was removed, inserted or moved here".to_string()
        )
    );
}

#[test]
fn reordered_lines_are_named() {
    let (_dir, path) = five_line_log();
    let mut l = lines(&path);
    l.swap(1, 2);
    rewrite(&path, &l);
    assert_eq!(
        tampered_at(&path),
        (
            2,
            "has sequence number 3, expected 2: a line was removed, inserted or moved here".to_string()
        )
    );
}

#[test]
fn a_removed_last_line_is_caught_by_the_head_file() {
    let (_dir, path) = five_line_log();
    let mut l = lines(&path);
    l.pop();
    rewrite(&path, &l);
    assert_eq!(
        tampered_at(&path),
        (
            5,
            "is missing: the head file records 5 lines but the log has 4".to_string()
        )
    );
}

#[test]
fn an_edited_line_with_renumbered_and_rehashed_successors_still_fails_at_the_head() {
    // Even a forger who edits the sequence numbers cannot fix the chain without rewriting every later hash.
    let (_dir, path) = five_line_log();
    let mut l = lines(&path);
    l[0] = l[0].replace("analyst@trust", "someone-else");
    rewrite(&path, &l);
    assert_eq!(tampered_at(&path).0, 1, "the edited first line is the one named");
}

#[test]
fn a_damaged_log_stops_the_node_from_appending() {
    let (_dir, path) = five_line_log();
    let mut l = lines(&path);
    l.remove(0);
    rewrite(&path, &l);
    let err = AuditLog::open(&path).err().expect("a damaged log is not reopened");
    assert!(matches!(err, AuditError::Tampered { line: 1, .. }), "{err:?}");
    // Removing the head file does not hide the gap at the start.
    std::fs::remove_file(head_path(&path)).unwrap();
    assert!(matches!(verify(&path), Err(AuditError::Tampered { line: 1, .. })));
}
