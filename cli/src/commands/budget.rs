//! `tessera budget`: what the federation's project (or, with `--server`, the signed-in user's
//! project) has spent of its privacy budget at each trust, and what it may still spend, as each
//! trust's own ledger says.

use std::path::PathBuf;

use clap::Args;
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_protocol::TrustBudget;
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

pub fn run(args: BudgetArgs) -> Outcome {
    runtime()?.block_on(async {
        let (project, lines): (String, Vec<TrustBudget>) = match &args.service.server {
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
                (project, lines)
            }
            None => {
                let path = locate_config(args.config.as_deref())?;
                let config = FederationConfig::load(&path).map_err(Failure::connection)?;
                let project = config.federation.project.clone();
                let coordinator = Coordinator::new(config, &Catalog::builtin()).map_err(failure)?;
                let answers = coordinator.budget(&coordinator.context()).await;
                let lines = answers
                    .into_iter()
                    .map(|(trust, answer)| TrustBudget::of(&project, trust, answer))
                    .collect();
                (project, lines)
            }
        };
        print(&project, &lines)
    })
}

/// Prints each trust's account; fails (exit 2) if a trust did not say.
fn print(project: &str, lines: &[TrustBudget]) -> Outcome {
    println!("privacy budget of project {project} (ρ, zero-concentrated differential privacy):");
    for line in lines {
        println!("  {}: {}", line.trust, line.summary());
    }
    match lines.iter().find_map(|line| line.error.as_ref()) {
        Some(error) => Err(Failure::connection(error.clone())),
        None => Ok(()),
    }
}
