//! `tessera query`: SQL across every trust, from `-c`, `-f` or an interactive prompt.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use datafusion::sql::parser::DFParser;
use tessera_engine::coordinator::{Coordinator, ErrorKind, FederationConfig, QueryError};
use tessera_schemas::Catalog;

use crate::exit::{runtime, Failure, Outcome, SCRIPT_ERROR};
use crate::output::{self, Format};

#[derive(Args)]
pub struct QueryArgs {
    /// The federation file (default: $TESSERA_CONFIG, then ~/.config/tessera/config.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Run these SQL statements and exit.
    #[arg(short = 'c', long = "command", value_name = "SQL", conflicts_with = "file")]
    pub command: Option<String>,
    /// Run the statements in FILE and exit; the first failure stops the script (exit 3).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write results to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Finds the federation file: the flag, then `TESSERA_CONFIG`, then `~/.config/tessera/config.toml`.
pub fn locate_config(flag: Option<&Path>) -> Result<PathBuf, Failure> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("TESSERA_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let path = PathBuf::from(home).join(".config/tessera/config.toml");
        if path.exists() {
            return Ok(path);
        }
    }
    Err(Failure::connection(
        "no federation configuration: pass --config FILE, set TESSERA_CONFIG, or create ~/.config/tessera/config.toml",
    ))
}

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
    pub async fn run(&self, coordinator: &Coordinator, sql: &str) -> Result<(), QueryError> {
        let started = Instant::now();
        if Coordinator::is_explain(sql) {
            let text = coordinator.explain(sql).await?;
            self.emit(|out| out.write_all(text.as_bytes()).map_err(|e| e.to_string()))
                .map_err(write_error)?;
            return Ok(());
        }
        let result = crate::progress::with_progress(coordinator, sql).await?;
        self.emit(|out| output::write(self.format, &result.schema, &result.batches, out))
            .map_err(write_error)?;
        let mut footer = format!(
            "{}\ndisclosure control: {}",
            result.provenance.summary(),
            result.disclosure
        );
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
    QueryError {
        kind: ErrorKind::Query,
        message,
    }
}

pub fn run(args: QueryArgs) -> Outcome {
    let config_path = locate_config(args.config.as_deref())?;
    let config = FederationConfig::load(&config_path).map_err(Failure::connection)?;
    let sink = Sink {
        format: args.format,
        output: args.output.clone(),
        timing: false,
    };
    runtime()?.block_on(async {
        let coordinator = Coordinator::new(config, &Catalog::builtin()).map_err(failure)?;
        if let Some(sql) = &args.command {
            let statements = split_statements(sql).map_err(Failure::query)?;
            for statement in statements {
                cancellable(sink.run(&coordinator, &statement)).await.map_err(failure)?;
            }
            return Ok(());
        }
        if let Some(file) = &args.file {
            return run_script(&coordinator, &sink, file).await;
        }
        crate::repl::run(&coordinator, sink).await
    })
}

/// Runs a script; the first failing statement stops it with exit code 3.
async fn run_script(coordinator: &Coordinator, sink: &Sink, file: &Path) -> Outcome {
    let script_error = |message: String| Failure {
        message,
        code: SCRIPT_ERROR,
    };
    let text = std::fs::read_to_string(file).map_err(|e| script_error(format!("{}: {e}", file.display())))?;
    let statements = split_statements(&text).map_err(|e| script_error(format!("{}: {e}", file.display())))?;
    for (i, statement) in statements.iter().enumerate() {
        if let Err(e) = cancellable(sink.run(coordinator, statement)).await {
            return Err(script_error(format!(
                "{}: statement {}: {}",
                file.display(),
                i + 1,
                e.message
            )));
        }
    }
    Ok(())
}

/// Runs `query` until it finishes or Ctrl-C; dropping it cancels the fragments at every trust.
pub async fn cancellable<T>(query: impl std::future::Future<Output = Result<T, QueryError>>) -> Result<T, QueryError> {
    tokio::select! {
        result = query => result,
        _ = tokio::signal::ctrl_c() => Err(QueryError { kind: ErrorKind::Query, message: "cancelled".into() }),
    }
}
