//! `tessera`: generate synthetic NHS data, run a trust node, verify its audit log, ask a node a question.

mod backend;
mod commands;
mod describe;
mod exit;
mod output;
mod progress;
mod repl;
mod runner;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Tessera: federated SQL analytics across NHS trusts, without moving patient rows.
#[derive(Parser)]
#[command(name = "tessera", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate realistic synthetic NHS-like data for some trusts, with a ready node.toml each.
    Gen(commands::gen::GenArgs),
    /// Run a trust node: a Flight SQL server that answers only aggregate queries.
    Node {
        /// The node's configuration file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the federation's coordinator as a Flight SQL service users sign in to.
    Serve {
        /// The federation file, with a [server] section.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Work with a node's (or the service's) audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Ask SQL across every trust of a federation (-c, -f, or an interactive prompt).
    Query(commands::query::QueryArgs),
    /// What the federation's project has spent of its privacy budget at each trust.
    Budget(commands::budget::BudgetArgs),
    /// Send one SQL query straight to a node and print its answer.
    Ask(commands::ask::AskArgs),
    /// Generate data for three trusts, start their nodes and ask each a few questions.
    Demo(commands::demo::DemoArgs),
    /// Certificates for TLS on every link.
    Certs {
        #[command(subcommand)]
        command: commands::certs::CertsCommand,
    },
    /// Manage a users file (a trust's analysts, or the service's users).
    User {
        #[command(subcommand)]
        command: commands::user::UserCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain of an audit log; exits 1 naming the first bad line.
    Verify {
        /// The audit log (JSON lines).
        file: PathBuf,
    },
    /// Summarise who asked what, allowed and refused, and list every refused or failed request.
    Show {
        /// The audit log (JSON lines).
        file: PathBuf,
        /// Only this project.
        #[arg(long)]
        project: Option<String>,
        /// Only requests on or after this day (UTC), e.g. 2026-11-01.
        #[arg(long, value_name = "DATE")]
        since: Option<chrono::NaiveDate>,
        /// The trust's privacy ledger, to list what each project spent (default:
        /// privacy-ledger.jsonl beside the audit log, where `tessera gen` puts it).
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tessera_protocol::tls::install_crypto_provider();
    let outcome = match cli.command {
        Command::Gen(args) => commands::gen::run(args),
        Command::Node { config } => commands::node::run(&config),
        Command::Serve { config } => commands::serve::run(&config),
        Command::Audit {
            command: AuditCommand::Verify { file },
        } => commands::audit::verify(&file),
        Command::Audit {
            command:
                AuditCommand::Show {
                    file,
                    project,
                    since,
                    ledger,
                },
        } => commands::audit::show(
            &file,
            ledger.as_deref(),
            &tessera_node::audit_summary::Filter { project, since },
        ),
        Command::Ask(args) => commands::ask::run(args),
        Command::Budget(args) => commands::budget::run(args),
        Command::Query(args) => commands::query::run(args),
        Command::Demo(args) => commands::demo::run(args),
        Command::Certs { command } => commands::certs::run(command),
        Command::User { command } => commands::user::run(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
