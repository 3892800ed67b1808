//! `tessera budget`: what the federation's project (or, with `--server`, the signed-in user's
//! project) has spent of its privacy budget at each trust, and what it may still spend, as each
//! trust's own ledger says.

use std::path::PathBuf;

use clap::Args;
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_protocol::{BudgetNote, TrustBudget};
use tessera_schemas::Catalog;

use super::query::locate_config;
use super::service::ServiceArgs;
use crate::exit::{runtime, Failure, Outcome};
use crate::runner::failure;

#[derive(Args)]
pub struct BudgetArgs {
    /// The federation file (default: $TESSERA_CONFIG, then ~/.config/tessera/config.toml).
    #[arg(long, value_name = "FILE", conflicts_with = "server")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// Each trust's answer: its note, none (it keeps no budget), or why it did not say.
type Answers = Vec<(String, Result<Option<BudgetNote>, String>)>;

pub fn run(args: BudgetArgs) -> Outcome {
    runtime()?.block_on(async {
        let (project, answers) = match &args.service.server {
            Some(url) => {
                let client = args.service.sign_in(url).await?;
                let lines = client
                    .budget()
                    .await
                    .map_err(|e| failure(crate::backend::from_service(e)))?;
                let project = match lines.first() {
                    Some(line) => line.project.clone(),
                    None => args.service.project.clone().unwrap_or_default(),
                };
                (project, answers_of(lines))
            }
            None => {
                let path = locate_config(args.config.as_deref())?;
                let config = FederationConfig::load(&path).map_err(Failure::connection)?;
                let project = config.federation.project.clone();
                let coordinator = Coordinator::new(config, &Catalog::builtin()).map_err(failure)?;
                (project, coordinator.budget(&coordinator.context()).await)
            }
        };
        print(&project, answers)
    })
}

/// The service's lines as the trusts' answers.
fn answers_of(lines: Vec<TrustBudget>) -> Answers {
    lines
        .into_iter()
        .map(|line| {
            let answer = match line.error {
                Some(error) => Err(error),
                None => Ok(line.note),
            };
            (line.trust, answer)
        })
        .collect()
}

/// Prints each trust's account; fails (exit 2) if a trust did not say.
fn print(project: &str, answers: Answers) -> Outcome {
    println!("privacy budget of project {project} (ρ, zero-concentrated differential privacy):");
    let mut failed = None;
    for (trust, answer) in answers {
        match answer {
            Ok(Some(note)) => println!("  {trust}: {}", note.summary()),
            Ok(None) => println!("  {trust}: keeps no privacy budget (mode = \"sdc\")"),
            Err(e) => {
                println!("  {trust}: did not say ({e})");
                failed.get_or_insert(e);
            }
        }
    }
    match failed {
        Some(e) => Err(Failure::connection(e)),
        None => Ok(()),
    }
}
