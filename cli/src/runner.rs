//! Running one SQL statement (in this process or at the service) and writing its result, for `tessera query`
//! `-c`/`-f`, the interactive prompt and the demo alike.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use datafusion::sql::parser::DFParser;
use tessera_coordinator::{ErrorKind, QueryError};

use crate::backend::{Answer, Backend};
use crate::exit::Failure;
use crate::output::{self, Format};

/// The statements in `text`, each as SQL text.
pub fn split_statements(text: &str) -> Result<Vec<String>, String> {
    let statements = DFParser::parse_sql(text).map_err(|e| format!("syntax error: {e}"))?;
    Ok(statements.into_iter().map(|s| s.to_string()).collect())
}

/// A failure of one statement, as the right exit code.
pub fn failure(error: QueryError) -> Failure {
    match error.kind {
        ErrorKind::Query => Failure::query(error.message),
        ErrorKind::Connection => Failure::connection(error.message),
    }
}

/// Where results go, and how.
pub struct Sink {
    pub format: Format,
    pub output: Option<PathBuf>,
    pub timing: bool,
}

impl Sink {
    /// Runs one statement and writes its result, then its provenance (to stderr for machine formats).
    pub async fn run(&self, backend: &Backend, sql: &str) -> Result<(), QueryError> {
        let started = Instant::now();
        let (schema, batches, provenance, disclosure) = match backend.answer(sql).await? {
            Answer::Plan(text) => {
                self.emit(|out| out.write_all(text.as_bytes()).map_err(|e| e.to_string()))
                    .map_err(write_error)?;
                return Ok(());
            }
            Answer::Rows {
                schema,
                batches,
                provenance,
                disclosure,
            } => (schema, batches, provenance, disclosure),
        };
        self.emit(|out| output::write(self.format, &schema, &batches, out))
            .map_err(write_error)?;
        let mut footer = format!("{provenance}\ndisclosure control: {disclosure}");
        if self.timing {
            footer.push_str(&format!("; {:.1} ms", started.elapsed().as_secs_f64() * 1000.0));
        }
        if self.format == Format::Table && self.output.is_none() {
            println!("{footer}");
        } else {
            eprintln!("{footer}");
        }
        Ok(())
    }

    fn emit(&self, write: impl FnOnce(&mut dyn Write) -> Result<(), String>) -> Result<(), String> {
        match &self.output {
            Some(path) => {
                let mut file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
                write(&mut file)
            }
            None => {
                let stdout = std::io::stdout();
                if self.format.is_binary() && stdout.is_terminal() {
                    return Err("this format is binary: write it to a file with -o FILE".into());
                }
                let mut lock = stdout.lock();
                write(&mut lock)?;
                lock.flush().map_err(|e| e.to_string())
            }
        }
    }
}

fn write_error(message: String) -> QueryError {
    QueryError::query(message)
}

/// Runs `query` until it finishes or Ctrl-C; dropping it cancels the fragments at every trust.
pub async fn cancellable<T>(query: impl std::future::Future<Output = Result<T, QueryError>>) -> Result<T, QueryError> {
    tokio::select! {
        result = query => result,
        _ = tokio::signal::ctrl_c() => Err(QueryError::query("cancelled")),
    }
}
