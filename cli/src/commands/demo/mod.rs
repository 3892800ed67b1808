//! `tessera demo`: three synthetic trusts, their nodes, and a few questions asked of each.
//!
//! The tour asks real questions through the coordinator and shows, for each, the merged answer,
//! which trusts answered, and the fragment SQL every trust received. Then it shows a row-level
//! question refused by the coordinator, and every trust turning away a caller that is neither its
//! coordinator nor a signed-in analyst. Every link is TLS; the coordinator presents its certificate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use datafusion::arrow::util::pretty::pretty_format_batches;
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_node::node::{RunningNode, TrustNode};
use tessera_node::NodeConfig;
use tessera_protocol::client::NodeClient;
use tessera_protocol::tls::ClientTls;
use tessera_protocol::FragmentRequest;
use tessera_schemas::Catalog;

use super::gen::{
    generate_with_configs, write_private, GenArgs, Privacy, FEDERATION_FILE, GEN_PROJECT, RELEASE_LOG_FILE,
};
use crate::exit::{runtime, Failure, Outcome};
use crate::runner::failure;

mod tour;

#[derive(Args)]
pub struct DemoArgs {
    /// Where to write the demo data (default: a fresh temporary folder).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Admitted patient care episodes across the three trusts.
    #[arg(long, default_value_t = 200_000)]
    pub rows: u64,
    /// Random seed for the data.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Leave the nodes running after the tour (Ctrl-C stops them).
    #[arg(long)]
    pub keep_running: bool,
    /// How the trusts protect what they send (see `tessera gen --help`).
    #[arg(long, value_enum, default_value_t = Privacy::Dp)]
    pub privacy: Privacy,
}

/// A question no trust will answer: it asks for patient rows.
const REFUSED: &str = "SELECT person_id, admission_date, cost_gbp FROM apc_episodes WHERE los_days > 100";

pub fn run(args: DemoArgs) -> Outcome {
    let (out, _temp) = match &args.out {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp =
                tempfile::tempdir().map_err(|e| Failure::query(format!("cannot create a temporary folder: {e}")))?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    println!(
        "Generating synthetic data for RRK, RTH and RJ1 ({} admitted episodes) in {} …",
        args.rows,
        out.display()
    );
    let started = Instant::now();
    let generated = generate_with_configs(&GenArgs {
        out: out.clone(),
        providers: vec!["RRK".into(), "RTH".into(), "RJ1".into()],
        rows: args.rows,
        seed: args.seed,
        base_port: None,
        privacy: args.privacy,
    })?;
    let trusts = &generated.trusts;
    println!("  done in {:.1} s\n", started.elapsed().as_secs_f64());

    runtime()?.block_on(async {
        let catalog = Catalog::builtin();
        let mut nodes: Vec<(String, RunningNode)> = Vec::new();
        for trust in trusts {
            let config = NodeConfig::load(&trust.dir.join("node.toml")).map_err(Failure::connection)?;
            let node = TrustNode::start(&config, &catalog).await.map_err(Failure::connection)?;
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
            let running = node.spawn(addr).await.map_err(Failure::connection)?;
            println!("trust node {} listening on {}", trust.provider, running.url());
            nodes.push((trust.provider.clone(), running));
        }
        let mut federation = FederationConfig::new(
            "demo@tessera",
            GEN_PROJECT,
            nodes.iter().map(|(name, node)| (name.clone(), node.url())),
        );
        federation.tls = Some(tessera_coordinator::TlsSection {
            ca: generated.certs.ca.clone(),
            cert: generated.certs.coordinator.cert.clone(),
            key: generated.certs.coordinator.key.clone(),
        });
        federation.disclosure.release_log = Some(out.join(RELEASE_LOG_FILE));
        federation.disclosure.mode = args.privacy.coordinator_mode();
        let coordinator = Coordinator::new(federation.clone(), &catalog).map_err(failure)?;
        let private = args.privacy == Privacy::Dp;
        for (i, (title, sql)) in tour::questions(private).into_iter().enumerate() {
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            println!("\n== {}. {title}\n{sql}\n", i + 1);
            let result = coordinator.query(&sql).await.map_err(failure)?;
            let table = pretty_format_batches(&result.batches).map_err(Failure::query)?;
            println!("{table}");
            println!(
                "{} in {:.0} ms",
                result.provenance.summary(),
                result.elapsed.as_secs_f64() * 1000.0
            );
            println!("disclosure control: {}", result.disclosure);
            for (k, fragment) in result.provenance.fragments.iter().enumerate() {
                println!("  fragment {} sent to each trust: {fragment}", k + 1);
            }
        }
        println!("\n== A row-level question is refused\n{REFUSED}");
        match coordinator.query(REFUSED).await {
            Ok(_) => return Err(Failure::query("the coordinator answered a row-level query")),
            Err(e) => println!("error: {}", e.message),
        }
        println!("Each trust turns away a caller that is neither its coordinator nor a signed-in analyst:");
        let anonymous = ClientTls::load(&generated.certs.ca, None).map_err(Failure::connection)?;
        for (name, node) in &nodes {
            let client = NodeClient::connect(&node.url(), Some(&anonymous))
                .await
                .map_err(Failure::connection)?;
            match client.query(&FragmentRequest::new(REFUSED)).await {
                Ok(_) => return Err(Failure::query(format!("{name} answered an anonymous caller"))),
                Err(e) => println!("  {name}: {e}"),
            }
        }
        for trust in trusts {
            println!(
                "audit log of {}: {}",
                trust.provider,
                trust.dir.join("audit.jsonl").display()
            );
        }
        if args.keep_running {
            let path = out.join(FEDERATION_FILE);
            write_private(&path, &federation.to_toml())?;
            println!(
                "\nThe nodes keep running. In another terminal:\n  tessera query --config {}\nCtrl-C stops them.",
                path.display()
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        for (_, node) in nodes {
            node.stop().await;
        }
        Ok(())
    })
}
