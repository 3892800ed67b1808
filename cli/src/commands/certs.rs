//! `tessera certs dev --out DIR --names RRK,RTH,RJ1`: a development CA and certificates.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use tessera_protocol::dev_certs::write_dev_certs;
use tessera_protocol::tls::{read_pem, subject_of_pem};

use crate::exit::{Failure, Outcome};

#[derive(Subcommand)]
pub enum CertsCommand {
    /// Write a development CA and certificates for a coordinator and some trusts' nodes
    /// (valid for localhost and 127.0.0.1). Use your own PKI's certificates in production.
    Dev(DevArgs),
    /// Print a certificate's subject as a node compares it with `[access] coordinator_subject`.
    Subject {
        /// A PEM certificate (the first one in the file is read).
        file: PathBuf,
    },
}

#[derive(Args)]
pub struct DevArgs {
    /// Folder to write ca.pem, coordinator.pem, coordinator-key.pem, NAME.pem and NAME-key.pem into.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The trusts' names (ODS codes), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub names: Vec<String>,
}

pub fn run(command: CertsCommand) -> Outcome {
    match command {
        CertsCommand::Dev(args) => {
            let certs = write_dev_certs(&args.out, &args.names).map_err(Failure::query)?;
            println!("CA: {}", certs.ca.display());
            println!(
                "coordinator: {} (key {}); pin its subject in each node.toml:\n  [access] coordinator_subject = \"{}\"",
                certs.coordinator.cert.display(),
                certs.coordinator.key.display(),
                certs.coordinator_subject
            );
            for (name, party) in &certs.nodes {
                println!("{name}: {} (key {})", party.cert.display(), party.key.display());
            }
            Ok(())
        }
        CertsCommand::Subject { file } => {
            let pem = read_pem(&file, "CERTIFICATE").map_err(Failure::connection)?;
            let subject = subject_of_pem(&pem)
                .ok_or_else(|| Failure::query(format!("{}: not a readable X.509 certificate", file.display())))?;
            println!("{subject}");
            Ok(())
        }
    }
}
