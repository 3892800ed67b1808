//! `tessera query`: SQL across every trust, from `-c`, `-f` or an interactive prompt.

use std::path::{Path, PathBuf};

use clap::Args;
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_schemas::Catalog;

use tessera_privacy::Rho;

use super::service::ServiceArgs;
use crate::backend::Backend;
use crate::exit::{runtime, Failure, Outcome, SCRIPT_ERROR};
use crate::output::Format;
use crate::runner::{cancellable, failure, split_statements, Sink};

#[derive(Args)]
pub struct QueryArgs {
    /// The federation file (default: $TESSERA_CONFIG, then ~/.config/tessera/config.toml): the
    /// coordinator runs in this process, for its operator and the demo.
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The privacy loss each question may cost at each trust, a ρ such as 0.1 (trusts in
    /// differential privacy mode cap it; default: each trust's own). More spend, less noise.
    #[arg(long, value_name = "RHO", value_parser = parse_spend)]
    pub spend: Option<Rho>,
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

pub fn run(args: QueryArgs) -> Outcome {
    runtime()?.block_on(async {
        let backend = match &args.service.server {
            Some(url) => sign_in(url, &args).await?,
            None => {
                let config_path = locate_config(args.config.as_deref())?;
                let config = FederationConfig::load(&config_path).map_err(Failure::connection)?;
                let coordinator = Coordinator::new(config, &Catalog::builtin()).map_err(failure)?;
                // Every statement of this session is asked as the configured requester, in its project.
                let mut context = coordinator.context();
                context.privacy_spend = args.spend.map(|r| r.0);
                Backend::Embedded {
                    coordinator: Box::new(coordinator),
                    context,
                }
            }
        };
        let sink = Sink {
            format: args.format,
            output: args.output.clone(),
            timing: false,
        };
        if let Some(sql) = &args.command {
            let statements = split_statements(sql).map_err(Failure::query)?;
            for statement in statements {
                cancellable(sink.run(&backend, &statement)).await.map_err(failure)?;
            }
            return Ok(());
        }
        if let Some(file) = &args.file {
            return run_script(&backend, &sink, file).await;
        }
        crate::repl::run(&backend, sink).await
    })
}

/// `--spend`: a ρ above 0, at most 1000.
fn parse_spend(text: &str) -> Result<Rho, String> {
    Rho::parse(text)
        .ok_or_else(|| format!("`{text}` is not a privacy spend: give a ρ above 0 and at most 1000, such as 0.1"))
}

/// Signs in to the service at `url`; every question asks for `--spend`.
async fn sign_in(url: &str, args: &QueryArgs) -> Result<Backend, Failure> {
    let client = args.service.sign_in(url).await?.with_spend(args.spend.map(Rho::as_f64));
    Ok(Backend::Service {
        client,
        url: url.to_string(),
    })
}

/// Runs a script; the first failing statement stops it with exit code 3.
async fn run_script(backend: &Backend, sink: &Sink, file: &Path) -> Outcome {
    let script_error = |message: String| Failure {
        message,
        code: SCRIPT_ERROR,
    };
    let text = std::fs::read_to_string(file).map_err(|e| script_error(format!("{}: {e}", file.display())))?;
    let statements = split_statements(&text).map_err(|e| script_error(format!("{}: {e}", file.display())))?;
    for (i, statement) in statements.iter().enumerate() {
        if let Err(e) = cancellable(sink.run(backend, statement)).await {
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
