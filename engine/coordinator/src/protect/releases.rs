//! The project's release log around running a question: a budget checked before it runs, and
//! a record of what it released before it is returned.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::physical_plan::ExecutionPlan;
use tessera_disclosure::{DisclosureConfig, Ledger, Release, ReleaseLog};

use crate::error::QueryError;
use crate::fanout::federated_scans;

/// Refuses a question about too many sets of records, or any question once the project has
/// been given its budget of distinct values (values given before are free: same noise). The
/// check comes before the question runs: refusing a result for the values it holds would tell
/// how many cells it had.
pub fn check_budget(
    log: &ReleaseLog,
    ledger: &Ledger,
    disclosure: &DisclosureConfig,
    project: &str,
) -> Result<(), QueryError> {
    let asked = ledger.sets.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
    if disclosure.max_sets_per_question > 0 && asked > disclosure.max_sets_per_question {
        return Err(QueryError::query(format!(
            "this question asks about {asked} different sets of records (each statistic's FILTER or class, in each \
             table of the question); at most {} are allowed in one question ([disclosure] max_sets_per_question). \
             Ask it as several questions, or group by a column instead of filtering on each value",
            disclosure.max_sets_per_question
        )));
    }
    let given = log
        .released_values()
        .map_err(|message| QueryError::query(format!("{message} (results are released only once logged)")))?;
    let budget = disclosure.release_budget;
    if budget > 0 && given.len() as u64 >= budget {
        return Err(QueryError::query(format!(
            "project {project} has been given its budget of {budget} distinct values ([disclosure] release_budget); \
             ask the federation's data-access team to review and extend it"
        )));
    }
    Ok(())
}

/// Logs a released result about people; a result that cannot be logged is not returned, and
/// neither is a partial one (`failure`: the first trust that did not answer) (it could be subtracted from a complete answer to the same question).
pub fn record_release(
    log: &ReleaseLog,
    sql: &str,
    physical: &Arc<dyn ExecutionPlan>,
    failure: Option<String>,
    ledger: &Ledger,
) -> Result<(), QueryError> {
    if let Some(failure) = failure {
        return Err(QueryError::connection(format!(
            "{failure}; with disclosure control on, a partial answer about people is not released (it could be \
             subtracted from a complete one). Retry when every trust answers"
        )));
    }
    let scans = federated_scans(physical);
    let release = Release {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        query_id: scans.first().map(|s| s.query_id().to_string()).unwrap_or_default(),
        sql: sql.to_string(),
        sets: ledger
            .sets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect(),
        values: ledger
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|v| format!("{v:016x}"))
            .collect(),
    };
    log.append(&release).map_err(|message| {
        QueryError::query(format!(
            "{message} (a result is returned only once its release is logged)"
        ))
    })
}

/// Where the project's releases are logged unless `release_log` says otherwise:
/// `$XDG_DATA_HOME/tessera/releases/<project>.jsonl` (or under `~/.local/share`).
pub fn default_release_log(project: &str) -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local").join("share")))
        .unwrap_or_else(|| PathBuf::from("."));
    let name = project
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            true => c,
            false => '_',
        })
        .collect::<String>();
    let name = if name.is_empty() { "default".to_string() } else { name };
    base.join("tessera").join("releases").join(format!("{name}.jsonl"))
}
