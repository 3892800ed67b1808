//! `tessera budget`: what the federation's project has spent of its privacy budget at each
//! trust, and what it may still spend, as each trust's own ledger says.

use std::path::PathBuf;

use clap::Args;
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_protocol::privacy::rho_text;
use tessera_protocol::BudgetNote;
use tessera_schemas::Catalog;

use super::query::locate_config;
use crate::exit::{runtime, Failure, Outcome};
use crate::runner::failure;

#[derive(Args)]
pub struct BudgetArgs {
    /// The federation file (default: $TESSERA_CONFIG, then ~/.config/tessera/config.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn run(args: BudgetArgs) -> Outcome {
    let path = locate_config(args.config.as_deref())?;
    let config = FederationConfig::load(&path).map_err(Failure::connection)?;
    let project = config.federation.project.clone();
    runtime()?.block_on(async {
        let coordinator = Coordinator::new(config, &Catalog::builtin()).map_err(failure)?;
        let answers = coordinator.budget(&coordinator.context()).await;
        println!("privacy budget of project {project} (ρ, zero-concentrated differential privacy):");
        let mut failed = None;
        for (trust, answer) in answers {
            match answer {
                Ok(Some(note)) => println!("  {trust}: {}", line(&note)),
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
    })
}

/// One trust's account, e.g. `spent 0.15 of 1 (0.85 left) in 3 questions; a question spends 0.05
/// unless it asks for up to 0.25; each person's records capped at 10 per question`.
fn line(note: &BudgetNote) -> String {
    format!(
        "spent {} of {} ({} left) in {} questions; a question spends {} unless it asks for up to {}; \
         each person's records capped at {} per question",
        rho_text(note.spent),
        rho_text(note.budget),
        rho_text(note.budget.saturating_sub(note.spent)),
        note.questions,
        rho_text(note.question_spend),
        rho_text(note.max_question_spend),
        note.records_per_person
    )
}
