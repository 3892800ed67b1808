//! The demo's questions, federated across three live trust nodes versus single-node DataFusion
//! over the union of the same files, with and without disclosure control, measured side by side
//! in one run; what disclosure control does to the answers (rows withheld, how far values move);
//! one question's cost after 0, 32 and 128 earlier releases in the same project; and the same
//! questions with differential privacy at each trust (each asked anew), with the error of
//! released counts by the size of their cell.
//!
//! `cargo run --release -p tessera-benches --bin federation_bench -- --rows 1000000`

use std::time::{Duration, Instant};

use clap::Parser;
use tessera_benches::private::{ask_anew, error_by_count, samples, start_nodes};
use tessera_benches::{summarise, utility};
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_disclosure::DisclosureConfig;
use tessera_protocol::dev_certs::write_dev_certs;
use tessera_support::reference::union_session;

/// The demo's tour is the benchmark's workload: the same questions, from the same file.
#[path = "../../../cli/src/commands/demo/tour.rs"]
mod tour;
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
    let running = start_nodes(&trusts, &certs, &catalog, None).await;
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
    // Differential privacy at each trust: the same files behind nodes in `dp` mode.
    let ledgers = dir.path().join("ledgers");
    let private_nodes = start_nodes(&trusts, &certs, &catalog, Some(&ledgers)).await;
    let mut config = FederationConfig::new(
        "bench",
        "",
        private_nodes.iter().map(|(name, node)| (name.clone(), node.url())),
    );
    config.tls = federation.tls.clone();
    config.disclosure = DisclosureConfig {
        mode: tessera_disclosure::Mode::Dp,
        ..DisclosureConfig::default()
    };
    let private = Coordinator::new(config, &catalog).expect("coordinator");
    let mut asked = 0usize;
    let mut next = || {
        asked += 1;
        asked
    };
    println!(
        "\n## Differential privacy at each trust vs no protection (p50 ms; every private question new, at ρ ≈ 0.05)\n"
    );
    println!(
        "| # | question | private | off | single-node | private / off | private / single | values | within 2 % | mean relative change |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, (title, sql)) in tour::questions(true).iter().enumerate() {
        ask_anew(&private, next(), sql).await;
        // The trusts' default (cell key) policy may refuse what a private trust answers.
        let off_refused = exact.query(sql).await.err().map(|e| e.message);
        let (mut on, mut off, mut local) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..args.iterations {
            let n = next();
            on.push(
                time(|| async {
                    ask_anew(&private, n, sql).await;
                })
                .await,
            );
            if off_refused.is_none() {
                off.push(time(|| async { exact.query(sql).await.map(|_| ()).expect("exact answer") }).await);
            }
            local.push(time(|| async { single.sql(sql).await.unwrap().collect().await.map(|_| ()).unwrap() }).await);
        }
        let (on50, _) = summarise(on);
        let (s50, _) = summarise(local);
        let (off_text, ratio) = match off_refused {
            None => {
                let (off50, _) = summarise(off);
                (format!("{off50:.1}"), format!("{:.2}", on50 / off50))
            }
            Some(_) => ("refused by the cell key policy".to_string(), "—".to_string()),
        };
        let answer = ask_anew(&private, next(), sql).await;
        let truth = single.sql(sql).await.unwrap().collect().await.unwrap();
        let u = utility(&truth, &answer.batches);
        println!(
            "| {} | {title} | {on50:.1} | {off_text} | {s50:.1} | {ratio} | {:.2} | {} | {} | {:.3} % |",
            i + 1,
            on50 / s50,
            u.values,
            u.within_2pct,
            100.0 * u.mean_relative_change
        );
    }

    // The error of a released count by the size of its cell, against the stated sd.
    let questions = [
        "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex",
        "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band",
        "SELECT treatment_specialty, age_band, count(*) AS n FROM apc_episodes GROUP BY 1, 2",
        "SELECT treatment_specialty, age_band, sex, imd_decile, count(*) AS n FROM apc_episodes GROUP BY 1, 2, 3, 4",
        "SELECT treatment_specialty, age_band, sex, admission_method, count(*) AS n FROM apc_episodes GROUP BY 1, 2, 3, 4",
    ];
    let mut all = Vec::new();
    for sql in questions {
        let truth = single.sql(sql).await.unwrap().collect().await.unwrap();
        for _ in 0..3 {
            all.extend(samples(&truth, &ask_anew(&private, next(), sql).await, "n"));
        }
    }
    println!(
        "\n## Error of a released count by its true count (3 trusts, ρ ≈ 0.05 a question, each asked 3 times anew)\n"
    );
    println!(
        "| true count (½× to 2×) | cells | RMS error | mean error | stated sd | RMS / sd | mean relative error | within 2 % |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for band in error_by_count(&all) {
        println!(
            "| {} | {} | {:.1} | {:+.1} | {:.1} | {:.2} | {:.2} % | {:.0} % |",
            band.about,
            band.cells,
            band.rms,
            band.bias,
            band.stated_sd,
            band.rms / band.stated_sd,
            100.0 * band.mean_relative,
            100.0 * band.within_2pct
        );
    }
    for (_, node) in running.into_iter().chain(private_nodes) {
        node.stop().await;
    }
}

async fn time<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) -> Duration {
    let started = Instant::now();
    f().await;
    started.elapsed()
}
