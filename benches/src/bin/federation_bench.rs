//! The demo's questions, federated across three live trust nodes versus single-node DataFusion
//! over the union of the same files, measured side by side in one run.
//!
//! `cargo run --release -p tessera-benches --bin federation_bench -- --rows 1000000`

use std::time::{Duration, Instant};

use clap::Parser;
use tessera_benches::summarise;
use tessera_engine::auth::{generate_token, token_digest};
use tessera_engine::coordinator::{Coordinator, FederationConfig};
use tessera_engine::reference::union_session;
use tessera_engine::tour::TOUR;
use tessera_flight::node::TrustNode;
use tessera_flight::NodeConfig;
use tessera_schemas::gen::{generate, GenConfig};
use tessera_schemas::Catalog;

#[derive(Parser)]
struct Args {
    /// Admitted patient care episodes across the three trusts.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Timed runs per query (after one warm-up run).
    #[arg(long, default_value_t = 10)]
    iterations: usize,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("temporary folder");
    let catalog = Catalog::builtin();
    let providers = ["RRK", "RTH", "RJ1"];
    let trusts = generate(
        &GenConfig {
            out: dir.path().to_path_buf(),
            providers: providers.iter().map(|p| p.to_string()).collect(),
            rows: args.rows,
            seed: 7,
        },
        &catalog,
    )
    .expect("generation");

    let token = generate_token();
    let mut running = Vec::new();
    for trust in &trusts {
        let tables = trust.tables.iter().map(|t| t.table.clone()).collect::<Vec<_>>();
        let mut config = NodeConfig::for_trust_dir(&trust.provider, &trust.dir, "127.0.0.1:0", &tables);
        config.access.coordinator_token_sha256 = Some(token_digest(&token));
        let node = TrustNode::start(&config, &catalog).await.expect("node starts");
        running.push((
            trust.provider.clone(),
            node.spawn("127.0.0.1:0".parse().unwrap()).await.expect("node binds"),
        ));
    }
    let mut federation = FederationConfig::new(
        "bench",
        "",
        running.iter().map(|(name, node)| (name.clone(), node.url())),
    );
    federation.federation.coordinator_token = Some(token);
    federation.disclosure.release_log = Some(dir.path().join("release-log.jsonl"));
    let coordinator = Coordinator::new(federation, &catalog).expect("coordinator");
    let dirs = trusts.iter().map(|t| t.dir.clone()).collect::<Vec<_>>();
    let single = union_session(&dirs, &catalog).expect("reference session");

    println!("## Demo questions: federated (3 trust nodes) vs single-node DataFusion on the union ({} episodes, {} iterations, ms)\n", args.rows, args.iterations);
    println!("| # | question | federated p50 | federated p95 | single-node p50 | federated / single |");
    println!("|---:|---|---:|---:|---:|---:|");
    for (i, (title, sql)) in TOUR.iter().enumerate() {
        coordinator.query(sql).await.expect("federated answer");
        single.sql(sql).await.unwrap().collect().await.unwrap();
        let (mut federated, mut local) = (Vec::new(), Vec::new());
        for _ in 0..args.iterations {
            federated
                .push(time(|| async { coordinator.query(sql).await.map(|_| ()).expect("federated answer") }).await);
            local.push(time(|| async { single.sql(sql).await.unwrap().collect().await.map(|_| ()).unwrap() }).await);
        }
        let (f50, f95) = summarise(federated);
        let (s50, _) = summarise(local);
        println!(
            "| {} | {title} | {f50:.1} | {f95:.1} | {s50:.1} | {:.2} |",
            i + 1,
            f50 / s50
        );
    }
    for (_, node) in running {
        node.stop().await;
    }
}

async fn time<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) -> Duration {
    let started = Instant::now();
    f().await;
    started.elapsed()
}
