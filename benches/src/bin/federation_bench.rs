//! The demo's questions, federated across three live trust nodes versus single-node DataFusion
//! over the union of the same files, with and without disclosure control, measured side by side
//! in one run; what disclosure control does to the answers (rows withheld, how far values move);
//! and one question's cost after 0, 32 and 128 earlier releases in the same project.
//!
//! `cargo run --release -p tessera-benches --bin federation_bench -- --rows 1000000`

use std::time::{Duration, Instant};

use clap::Parser;
use tessera_benches::{summarise, utility};
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_disclosure::DisclosureConfig;
use tessera_protocol::dev_certs::write_dev_certs;
use tessera_support::reference::union_session;

/// The demo's tour is the benchmark's workload: the same questions, from the same file.
#[path = "../../../cli/src/commands/demo/tour.rs"]
mod tour;
use tessera_node::node::TrustNode;
use tessera_node::NodeConfig;
use tessera_schemas::gen::{generate, GenConfig};

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
    let (dir, catalog) = tessera_benches::start();
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

    let certs = write_dev_certs(&dir.path().join("certs"), &providers.map(String::from)).expect("certificates");
    let mut running = Vec::new();
    for trust in &trusts {
        let tables = trust.tables.iter().map(|t| t.table.clone()).collect::<Vec<_>>();
        let mut config = NodeConfig::for_trust_dir(&trust.provider, &trust.dir, "127.0.0.1:0", &tables);
        tessera_support::configure_test_node(&mut config, &certs);
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
    federation.tls = Some(tessera_support::tls_section(&certs));
    let coordinator_with = |disclosure: DisclosureConfig| {
        let mut config = federation.clone();
        config.disclosure = disclosure;
        Coordinator::new(config, &catalog).expect("coordinator")
    };
    let log = |name: &str| DisclosureConfig {
        release_log: Some(dir.path().join(name)),
        release_budget: 0,
        ..DisclosureConfig::default()
    };
    let protected = coordinator_with(log("tour.jsonl"));
    let exact = coordinator_with(DisclosureConfig::off());
    let dirs = trusts.iter().map(|t| t.dir.clone()).collect::<Vec<_>>();
    let single = union_session(&dirs, &catalog).expect("reference session");

    println!(
        "## Demo questions: federated (3 trust nodes) vs single-node DataFusion on the union ({} episodes, {} iterations, p50 ms)\n",
        args.rows, args.iterations
    );
    println!("Disclosure control on: the cell model, thresholds, dominance and cell-key perturbation.\n");
    println!("| # | question | federated, disclosure on | federated, off | single-node | on / off | off / single |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    let tour = tour::questions(false);
    for (i, (title, sql)) in tour.iter().enumerate() {
        protected.query(sql).await.expect("federated answer");
        exact.query(sql).await.expect("federated answer");
        single.sql(sql).await.unwrap().collect().await.unwrap();
        let (mut on, mut off, mut local) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.iterations {
            on.push(time(|| async { protected.query(sql).await.map(|_| ()).expect("federated answer") }).await);
            off.push(time(|| async { exact.query(sql).await.map(|_| ()).expect("federated answer") }).await);
            local.push(time(|| async { single.sql(sql).await.unwrap().collect().await.map(|_| ()).unwrap() }).await);
        }
        let (on50, _) = summarise(on);
        let (off50, _) = summarise(off);
        let (s50, _) = summarise(local);
        println!(
            "| {} | {title} | {on50:.1} | {off50:.1} | {s50:.1} | {:.2} | {:.2} |",
            i + 1,
            on50 / off50,
            off50 / s50
        );
    }

    // The service: the same protected pipeline behind Flight SQL over TLS, signed in.
    let users = dir.path().join("service-users.toml");
    tessera_node::access::users::UsersFile {
        users: vec![tessera_node::access::users::User {
            name: "bench".into(),
            argon2id: tessera_node::access::users::hash_password("a bench password").expect("hash"),
            projects: vec!["bench".into()],
        }],
    }
    .save(&users)
    .expect("users file");
    let mut served = federation.clone();
    served.disclosure = DisclosureConfig {
        release_budget: 0,
        ..DisclosureConfig::default()
    };
    let mut server = tessera_coordinator::ServerSection::new("127.0.0.1:0", &users);
    server.state = dir.path().join("service");
    server.tls = Some(tessera_coordinator::ServerTls {
        cert: certs.coordinator.cert.clone(),
        key: certs.coordinator.key.clone(),
    });
    served.server = Some(server);
    let service = tessera_node::serve::Service::start(served, &dir.path().join("federation.toml"), catalog.clone())
        .expect("service starts")
        .spawn("127.0.0.1:0".parse().unwrap(), None)
        .await
        .expect("service binds");
    let ca = tessera_support::anonymous_tls(certs.ca.parent().expect("a folder"));
    let client = tessera_protocol::service_client::ServiceClient::sign_in(
        &service.url(),
        Some(&ca),
        "bench",
        "a bench password",
        None,
    )
    .await
    .expect("sign-in");
    println!("\n## Through the service (Flight SQL over TLS, signed in) vs the coordinator in process (both with disclosure control; p50 ms)\n");
    println!("| # | service | in process | service / in process |");
    println!("|---:|---:|---:|---:|");
    for (i, (_, sql)) in tour.iter().enumerate() {
        client.query(sql).await.expect("service answer");
        let (mut remote, mut local) = (Vec::new(), Vec::new());
        for _ in 0..args.iterations {
            remote.push(time(|| async { client.query(sql).await.map(|_| ()).expect("service answer") }).await);
            local.push(time(|| async { protected.query(sql).await.map(|_| ()).expect("federated answer") }).await);
        }
        let (r50, _) = summarise(remote);
        let (l50, _) = summarise(local);
        println!("| {} | {r50:.1} | {l50:.1} | {:.2} |", i + 1, r50 / l50);
    }
    service.stop().await;

    // What protection does to the answers: rows withheld, values withheld, how far values move.
    println!("\n## Utility: the tour's answers with disclosure control on vs off\n");
    println!("| # | rows (exact) | rows withheld | values compared | values withheld | mean relative change |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for (i, (_, sql)) in tour.iter().enumerate() {
        let on = protected.query(sql).await.expect("protected answer");
        let off = exact.query(sql).await.expect("exact answer");
        let u = utility(&off.batches, &on.batches);
        println!(
            "| {} | {} | {} | {} | {} | {:.4} % |",
            i + 1,
            u.exact_rows,
            u.rows_lost,
            u.values,
            u.values_withheld,
            100.0 * u.mean_relative_change
        );
    }

    // Protection keeps no history to compare with: a question costs the same after K releases.
    println!("\n## One question after K earlier releases in the same project (p50 ms)\n");
    println!("| earlier releases K | disclosure on | disclosure off | on / off |");
    println!("|---:|---:|---:|---:|");
    let question = "SELECT treatment_specialty, count(*) AS spells, avg(los_days) AS mean_los FROM apc_episodes \
                    WHERE admission_method LIKE '2%' GROUP BY 1";
    for k in [0usize, 32, 128] {
        let checked = coordinator_with(log(&format!("k{k}.jsonl")));
        for j in 0..k {
            let earlier = format!(
                "SELECT age_band, count(*) FROM apc_episodes WHERE imd_decile = {} AND sex = '{}' GROUP BY 1",
                1 + j % 10,
                ["F", "M"][j / 10 % 2]
            );
            checked.query(&earlier).await.expect("earlier release");
        }
        checked.query(question).await.expect("checked answer");
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..args.iterations {
            on.push(time(|| async { checked.query(question).await.map(|_| ()).expect("checked answer") }).await);
            off.push(time(|| async { exact.query(question).await.map(|_| ()).expect("exact answer") }).await);
        }
        let (on50, _) = summarise(on);
        let (off50, _) = summarise(off);
        println!("| {k} | {on50:.1} | {off50:.1} | {:.2} |", on50 / off50);
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
