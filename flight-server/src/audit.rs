//! The node's audit log: one JSON line per request, each carrying the SHA-256 of the line before.
//!
//! Altering, removing, inserting or reordering any line breaks the chain at that point, and
//! [`verify`] names the first bad line. A sidecar file `<log>.head` holds the number of lines and
//! the hash of the last one, so an edited or truncated tail is caught too. The head can itself be
//! rewritten by someone with write access to both files: for stronger assurance, record the head
//! hash that `tessera audit verify` prints somewhere the node's operator cannot change.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_protocol::RequestContext;

/// Whether a reader of the log would not see `c` as itself: control characters (JSON escapes
/// only those below U+0020) and the marks that reorder text on screen.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// JSON text with every invisible character written as a `\uXXXX` escape (still valid JSON, and
/// the same value when read back), so that no client-supplied text reaches the log raw.
fn escape_invisible(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match is_invisible(c) {
            true => out.push_str(&format!("\\u{:04x}", c as u32)),
            false => out.push(c),
        }
    }
    out
}

/// The `prev_hash` of the first line.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What the node decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The query passed the policy and was answered.
    Allowed,
    /// The policy refused it.
    Refused,
    /// It could not be run (syntax error, unknown table, timeout…).
    Error,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// 1 for the first line, then one more per line.
    pub seq: u64,
    /// UTC time, RFC 3339.
    pub time: String,
    pub query_id: String,
    pub requester: String,
    pub project: String,
    /// `coordinator`, `analyst` or `unauthenticated`: what the node recognised the caller as.
    pub role: String,
    /// Who the node authenticated: the certificate subject or user name (or what an
    /// unrecognised caller presented). `requester` is on whose behalf the coordinator asked.
    pub principal: String,
    /// The node's policy profile, when it is not the default (e.g. `exactness-test`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The Flight SQL call that carried the query (e.g. `DoGet`, `GetFlightInfo`).
    pub call: String,
    pub sql: String,
    pub decision: Decision,
    pub reason: Option<String>,
    /// Rows (groups) returned to the caller.
    pub rows: u64,
    /// SHA-256 (hex) of the previous line's bytes, without its newline.
    pub prev_hash: String,
}

/// What a request was, before it is sealed into a line.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// Who asked, for which project, under which query id.
    pub context: RequestContext,
    pub role: String,
    pub principal: String,
    pub profile: Option<String>,
    pub call: String,
    pub sql: String,
    pub decision: Decision,
    pub reason: Option<String>,
    pub rows: u64,
}

/// The head file's content: how long the log is and how it ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub lines: u64,
    pub hash: String,
}

/// The audit log failed to open, write or verify.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuditError {
    #[error("{file}: {message}")]
    Io { file: PathBuf, message: String },
    #[error("{file}: line {line}: {message}")]
    Tampered { file: PathBuf, line: u64, message: String },
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The head file beside `log`.
pub fn head_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".head");
    PathBuf::from(name)
}

/// A log verified intact: its length and the hash of its last line.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub lines: u64,
    pub head_hash: String,
}

/// Checks the whole chain of `log` (and its head file, if present).
pub fn verify(log: &Path) -> Result<Verified, AuditError> {
    let io = |file: &Path, e: std::io::Error| AuditError::Io {
        file: file.to_path_buf(),
        message: e.to_string(),
    };
    let bytes = std::fs::read(log).map_err(|e| io(log, e))?;
    let tampered = |line: u64, message: String| AuditError::Tampered {
        file: log.to_path_buf(),
        line,
        message,
    };
    let mut prev = GENESIS_HASH.to_string();
    let mut count = 0u64;
    if !bytes.is_empty() && !bytes.ends_with(b"\n") {
        let last = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        return Err(tampered(
            last,
            "the last line is incomplete (no newline): the log was cut or appended to by hand".into(),
        ));
    }
    for raw in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        count += 1;
        let entry: AuditEntry =
            serde_json::from_slice(raw).map_err(|e| tampered(count, format!("not a valid audit entry ({e})")))?;
        if entry.seq != count {
            return Err(tampered(
                count,
                format!(
                    "has sequence number {}, expected {count}: a line was removed, inserted or moved here",
                    entry.seq
                ),
            ));
        }
        if entry.prev_hash != prev {
            return Err(if count == 1 {
                tampered(1, "does not start the chain (prev_hash is not the genesis hash)".into())
            } else {
                tampered(
                    count - 1,
                    format!("was altered: its SHA-256 no longer matches the prev_hash recorded on line {count}"),
                )
            });
        }
        prev = sha256_hex(raw);
    }
    let head_file = head_path(log);
    if head_file.exists() {
        let text = std::fs::read_to_string(&head_file).map_err(|e| io(&head_file, e))?;
        let head: Head = serde_json::from_str(&text).map_err(|e| AuditError::Io {
            file: head_file.clone(),
            message: format!("not a valid head file: {e}"),
        })?;
        if head.lines > count {
            return Err(tampered(
                count + 1,
                format!(
                    "is missing: the head file records {} lines but the log has {count}",
                    head.lines
                ),
            ));
        }
        if head.lines < count {
            return Err(tampered(
                head.lines + 1,
                format!(
                    "was added after the head file was written ({} lines recorded, {count} found)",
                    head.lines
                ),
            ));
        }
        if head.hash != prev {
            return Err(tampered(
                count,
                "was altered: its SHA-256 no longer matches the head file".into(),
            ));
        }
    }
    Ok(Verified {
        lines: count,
        head_hash: prev,
    })
}

/// Appends entries to the log; shared by all requests of one node.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Mutex<Writer>>,
}

struct Writer {
    path: PathBuf,
    file: File,
    seq: u64,
    prev: String,
}

impl AuditLog {
    /// Opens `path` for appending after verifying what is already there.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let io = |file: &Path, e: std::io::Error| AuditError::Io {
            file: file.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        let verified = if path.exists() {
            verify(path)?
        } else {
            Verified {
                lines: 0,
                head_hash: GENESIS_HASH.to_string(),
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        Ok(AuditLog {
            inner: Arc::new(Mutex::new(Writer {
                path: path.to_path_buf(),
                file,
                seq: verified.lines,
                prev: verified.head_hash,
            })),
        })
    }

    /// Seals `record` into the next line and makes it durable before returning.
    /// Appends `record` durably, off the async workers; if the log cannot be written, the
    /// caller answers nothing (the error is the status to answer with).
    pub async fn record(&self, record: AuditRecord) -> Result<(), tonic::Status> {
        let audit = self.clone();
        let written = tokio::task::spawn_blocking(move || audit.append(record))
            .await
            .map_err(|e| tonic::Status::internal(format!("the audit writer failed: {e}")))?;
        written.map(|_| ()).map_err(|e| {
            tracing::error!("audit log write failed: {e}");
            tonic::Status::unavailable(format!("the audit log cannot be written, so nothing is answered: {e}"))
        })
    }

    pub fn append(&self, record: AuditRecord) -> Result<AuditEntry, AuditError> {
        let mut w = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = AuditEntry {
            seq: w.seq + 1,
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            query_id: record.context.query_id,
            requester: record.context.requester,
            project: record.context.project,
            role: record.role,
            principal: record.principal,
            profile: record.profile,
            call: record.call,
            sql: record.sql,
            decision: record.decision,
            reason: record.reason,
            rows: record.rows,
            prev_hash: w.prev.clone(),
        };
        let line = escape_invisible(&serde_json::to_string(&entry).expect("an audit entry always serialises"));
        let path = w.path.clone();
        let io = |e: std::io::Error| AuditError::Io {
            file: path.clone(),
            message: e.to_string(),
        };
        w.file.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
        w.file.sync_data().map_err(io)?;
        w.seq = entry.seq;
        w.prev = sha256_hex(line.as_bytes());
        let head = Head {
            lines: w.seq,
            hash: w.prev.clone(),
        };
        write_head(&w.path, &head)?;
        Ok(entry)
    }
}

/// Replaces the head file atomically (write a temporary file, then rename).
fn write_head(log: &Path, head: &Head) -> Result<(), AuditError> {
    let target = head_path(log);
    let mut tmp = target.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |e: std::io::Error| AuditError::Io {
        file: target.clone(),
        message: e.to_string(),
    };
    std::fs::write(&tmp, serde_json::to_vec(head).expect("a head always serialises")).map_err(io)?;
    std::fs::rename(&tmp, &target).map_err(io)
}

/// The reason audited for a question that stopped without an answer or a refusal.
pub const STOPPED: &str = "stopped before it was answered: the client went away, or the question failed unexpectedly";

/// An audit line written if a question is dropped (its client went away, or it panicked) before
/// it was audited otherwise; [`Unfinished::finish`] once it has been.
pub struct Unfinished {
    audit: AuditLog,
    record: Option<AuditRecord>,
}

impl Unfinished {
    /// Writes `record` to `audit` unless [`finish`](Self::finish) is called first.
    pub fn new(audit: &AuditLog, record: AuditRecord) -> Unfinished {
        Unfinished {
            audit: audit.clone(),
            record: Some(record),
        }
    }

    /// The question is audited otherwise: nothing to write.
    pub fn finish(&mut self) {
        self.record = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            let audit = self.audit.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn_blocking(move || audit.append(record));
                }
                Err(_) => {
                    let _ = audit.append(record);
                }
            }
        }
    }
}
