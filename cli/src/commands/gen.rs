//! `tessera gen`: synthetic data per trust, development certificates (`DIR/certs/`), a ready
//! `node.toml` and an empty `users.toml` each, and a `federation.toml` for the coordinator that
//! asks them over mutual TLS (every node pins the coordinator certificate's subject).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use tessera_coordinator::{FederationConfig, ServerSection, ServerTls, TlsSection};
use tessera_node::access::projects::ProjectsFile;
use tessera_node::access::users::UsersFile;
use tessera_node::config::NodeTls;
use tessera_node::node::dp::PrivacyMode;
use tessera_node::NodeConfig;
use tessera_protocol::dev_certs::{write_dev_certs, DevCerts};
use tessera_schemas::gen::{generate, GenConfig, GeneratedTrust};
use tessera_schemas::Catalog;

use crate::exit::{Failure, Outcome};

#[derive(Args)]
pub struct GenArgs {
    /// Folder to write into; each trust gets DIR/<provider>/.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// ODS codes of the trusts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "RRK,RTH,RJ1")]
    pub providers: Vec<String>,
    /// Admitted patient care episodes across all trusts (A&E and outpatients scale with it).
    #[arg(long, default_value_t = 100_000)]
    pub rows: u64,
    /// Random seed: the same seed and arguments give byte-identical files.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// First port for the generated node.toml files (default: free ports chosen now).
    #[arg(long)]
    pub base_port: Option<u16>,
    /// How the trusts protect what they send: `dp` (differential privacy: noise and budget at
    /// each trust) or `sdc` (exact partials to the coordinator, which applies the cell key method).
    #[arg(long, value_enum, default_value_t = Privacy::Dp)]
    pub privacy: Privacy,
}

/// The protection `tessera gen` configures at the trusts and the coordinator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Privacy {
    /// Differential privacy at each trust (the default).
    Dp,
    /// Statistical disclosure control at the coordinator (cell key method); see README for its residual leaks.
    Sdc,
}

impl Privacy {
    /// `[privacy] mode` of each node.
    fn node_mode(self) -> PrivacyMode {
        match self {
            Privacy::Dp => PrivacyMode::Dp,
            Privacy::Sdc => PrivacyMode::Sdc,
        }
    }

    /// `[disclosure] mode` of the coordinator.
    pub fn coordinator_mode(self) -> tessera_disclosure::Mode {
        match self {
            Privacy::Dp => tessera_disclosure::Mode::Dp,
            Privacy::Sdc => tessera_disclosure::Mode::On,
        }
    }
}

pub fn run(args: GenArgs) -> Outcome {
    let started = Instant::now();
    let trusts = generate_with_configs(&args)?.trusts;
    let seconds = started.elapsed().as_secs_f64();
    let mut total = 0;
    for trust in &trusts {
        let counts = trust
            .tables
            .iter()
            .map(|t| format!("{} {}", t.rows, t.table))
            .collect::<Vec<_>>()
            .join(", ");
        println!("{}: {counts}", trust.dir.display());
        total += trust.tables.iter().map(|t| t.rows).sum::<u64>();
    }
    println!(
        "generated {total} rows for {} trusts in {seconds:.1} s ({:.0} rows/s); start a node with: tessera node --config {}",
        trusts.len(),
        total as f64 / seconds.max(1e-9),
        trusts[0].dir.join("node.toml").display()
    );
    let federation = args.out.join(FEDERATION_FILE);
    println!(
        "then ask all of them with: tessera query --config {}\n\
         or run the service with: tessera serve --config {} (add users with: tessera user add --file {} NAME --projects {GEN_PROJECT} --password-stdin)",
        federation.display(),
        federation.display(),
        args.out.join(USERS_FILE).display()
    );
    Ok(())
}

/// The coordinator configuration `tessera gen` writes beside the trusts' folders.
pub const FEDERATION_FILE: &str = "federation.toml";

/// The project of the federation `tessera gen` writes (each trust approves it).
pub const GEN_PROJECT: &str = "synthetic";

/// Each trust's approved projects (relative to its `node.toml`).
pub const PROJECTS_FILE: &str = "projects.toml";

/// Each trust's analysts (relative to its `node.toml`), and the service's users (relative to
/// `federation.toml`); empty until `tessera user add`.
pub const USERS_FILE: &str = "users.toml";

/// The release log of that federation (relative to `federation.toml`).
pub const RELEASE_LOG_FILE: &str = "release-log.jsonl";

/// Where `tessera gen` writes the development certificates (relative to its `--out`).
pub const CERTS_DIR: &str = "certs";

/// What `tessera gen` produced.
pub struct Generated {
    pub trusts: Vec<GeneratedTrust>,
    /// The development certificates every file refers to.
    pub certs: DevCerts,
}

/// Generates the data and writes each trust's `node.toml` and the `federation.toml`; shared with
/// `tessera demo`.
pub fn generate_with_configs(args: &GenArgs) -> Result<Generated, Failure> {
    let config = GenConfig {
        out: args.out.clone(),
        providers: args.providers.iter().map(|p| p.trim().to_uppercase()).collect(),
        rows: args.rows,
        seed: args.seed,
    };
    let trusts = generate(&config, &Catalog::builtin()).map_err(Failure::query)?;
    // One port per trust, then the service's Flight SQL and HTTP ports.
    let mut ports = ports(trusts.len() + 2, args.base_port)?;
    let http_port = ports.pop().unwrap_or_default();
    let service_port = ports.pop().unwrap_or_default();
    let names = trusts.iter().map(|t| t.provider.clone()).collect::<Vec<_>>();
    let certs = write_dev_certs(&args.out.join(CERTS_DIR), &names).map_err(Failure::query)?;
    for (trust, port) in trusts.iter().zip(&ports) {
        write_node_config(trust, *port, &certs.coordinator_subject, args.privacy)?;
    }
    let nodes = trusts
        .iter()
        .zip(&ports)
        .map(|(trust, port)| (trust.provider.clone(), format!("https://127.0.0.1:{port}")));
    let mut federation = FederationConfig::new("", GEN_PROJECT, nodes);
    federation.tls = Some(TlsSection {
        ca: PathBuf::from(CERTS_DIR).join("ca.pem"),
        cert: PathBuf::from(CERTS_DIR).join("coordinator.pem"),
        key: PathBuf::from(CERTS_DIR).join("coordinator-key.pem"),
    });
    federation.disclosure.release_log = Some(PathBuf::from(RELEASE_LOG_FILE));
    federation.disclosure.mode = args.privacy.coordinator_mode();
    let mut server = ServerSection::new(&format!("127.0.0.1:{service_port}"), Path::new(USERS_FILE));
    server.http = Some(format!("127.0.0.1:{http_port}"));
    server.tls = Some(ServerTls {
        cert: PathBuf::from(CERTS_DIR).join("coordinator.pem"),
        key: PathBuf::from(CERTS_DIR).join("coordinator-key.pem"),
    });
    federation.server = Some(server);
    UsersFile::default()
        .save(&args.out.join(USERS_FILE))
        .map_err(Failure::query)?;
    let text = format!(
        "# Tessera coordinator for the trusts generated beside this file (written by `tessera gen`).\n\
         # The coordinator operator's file: whoever holds the key in [tls] is the coordinator to every trust.\n\
         # Development certificates; see README.md for every key.\n\n{}",
        federation.to_toml()
    );
    write_private(&args.out.join(FEDERATION_FILE), &text)?;
    // New data, new federation: releases of earlier data say nothing about it.
    match std::fs::remove_file(args.out.join(RELEASE_LOG_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Failure::query(format!(
                "{}: {e}",
                args.out.join(RELEASE_LOG_FILE).display()
            )))
        }
        _ => {}
    }
    Ok(Generated { trusts, certs })
}

fn write_node_config(
    trust: &GeneratedTrust,
    port: u16,
    coordinator_subject: &str,
    privacy: Privacy,
) -> Result<(), Failure> {
    let tables = trust.tables.iter().map(|t| t.table.clone()).collect::<Vec<_>>();
    let mut config = NodeConfig::for_generated(&trust.provider, &format!("127.0.0.1:{port}"), &tables);
    config.privacy.mode = privacy.node_mode();
    let certs = PathBuf::from("..").join(CERTS_DIR);
    config.tls = Some(NodeTls {
        cert: certs.join(format!("{}.pem", trust.provider)),
        key: certs.join(format!("{}-key.pem", trust.provider)),
        client_ca: certs.join("ca.pem"),
    });
    config.access.coordinator_subject = Some(coordinator_subject.to_string());
    config.access.users = Some(PathBuf::from(USERS_FILE));
    UsersFile::default()
        .save(&trust.dir.join(USERS_FILE))
        .map_err(Failure::query)?;
    config.access.projects = Some(PathBuf::from(PROJECTS_FILE));
    let projects = ProjectsFile {
        projects: vec![GEN_PROJECT.to_string()],
    };
    projects.save(&trust.dir.join(PROJECTS_FILE)).map_err(Failure::query)?;
    let text = format!(
        "# Tessera trust node for {} (written by `tessera gen`).\n# Paths are relative to this file. See README.md for every key.\n\n{}",
        trust.provider,
        config.to_toml()
    );
    let path: &Path = &trust.dir.join("node.toml");
    std::fs::write(path, text).map_err(|e| Failure::query(format!("{}: {e}", path.display())))
}

/// Writes a file only its owner can read (it holds a secret).
pub fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let fail = |e: std::io::Error| Failure::query(format!("{}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(text.as_bytes()).map_err(fail)
}

/// Distinct ports: consecutive from `base`, or free ones chosen by the OS now.
fn ports(n: usize, base: Option<u16>) -> Result<Vec<u16>, Failure> {
    if let Some(base) = base {
        return (0..n)
            .map(|i| {
                base.checked_add(i as u16)
                    .ok_or_else(|| Failure::query("--base-port is too high for this many trusts"))
            })
            .collect();
    }
    // Hold every listener until all are chosen, so the ports differ.
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::connection(format!("cannot find free ports: {e}")))?;
    listeners
        .iter()
        .map(|l| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|e| Failure::connection(e.to_string()))
        })
        .collect()
}
