//! `tessera demo`: three synthetic trusts, their nodes, and a few questions asked of each.
//!
//! Until the coordinator lands, the tour asks every node directly and shows each trust's own
//! aggregate answer, then shows a row-level question being refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use datafusion::arrow::util::pretty::pretty_format_batches;
use tessera_flight::client::NodeClient;
use tessera_flight::node::{RunningNode, TrustNode};
use tessera_flight::{FragmentRequest, NodeConfig};
use tessera_schemas::Catalog;

use super::gen::{generate_with_configs, GenArgs};
use crate::exit::{runtime, Failure, Outcome};

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
}

/// The questions of the tour: a title and the SQL each trust answers.
const TOUR: &[(&str, &str)] = &[
    (
        "Admissions per month (first quarter of 2024)",
        "SELECT date_trunc('month', admission_date) AS month, count(*) AS admissions \
         FROM apc_episodes WHERE admission_date >= DATE '2024-01-01' AND admission_date < DATE '2024-04-01' \
         GROUP BY 1 ORDER BY 1",
    ),
    (
        "Mean and standard deviation of length of stay, emergency admissions by specialty",
        "SELECT treatment_specialty, count(*) AS spells, round(avg(los_days), 2) AS mean_los, round(stddev(los_days), 2) AS sd_los \
         FROM apc_episodes WHERE admission_method LIKE '2%' GROUP BY 1 ORDER BY mean_los DESC LIMIT 5",
    ),
    (
        "A&E four-hour performance (type 1 departments)",
        "SELECT count(*) AS attendances, \
         round(100.0 * avg(CASE WHEN minutes_in_department <= 240 THEN 1.0 ELSE 0.0 END), 1) AS pct_within_4h \
         FROM ec_attendances WHERE department_type = '01'",
    ),
    (
        "Outpatient did-not-attend rate",
        "SELECT round(100.0 * avg(CASE WHEN attended = 'did_not_attend' THEN 1.0 ELSE 0.0 END), 2) AS dna_pct \
         FROM op_appointments",
    ),
];

/// A question no node will answer: it asks for patient rows.
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
    let trusts = generate_with_configs(&GenArgs {
        out: out.clone(),
        providers: vec!["RRK".into(), "RTH".into(), "RJ1".into()],
        rows: args.rows,
        seed: args.seed,
        base_port: None,
    })?;
    println!("  done in {:.1} s\n", started.elapsed().as_secs_f64());

    runtime()?.block_on(async {
        let catalog = Catalog::builtin();
        let mut nodes: Vec<(String, RunningNode)> = Vec::new();
        for trust in &trusts {
            let config = NodeConfig::load(&trust.dir.join("node.toml")).map_err(Failure::connection)?;
            let node = TrustNode::start(&config, &catalog).await.map_err(Failure::connection)?;
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
            let running = node.spawn(addr).await.map_err(Failure::connection)?;
            println!("node {} listening on {}", trust.provider, running.url());
            nodes.push((trust.provider.clone(), running));
        }
        let mut clients = Vec::new();
        for (name, node) in &nodes {
            clients.push((name.clone(), NodeClient::connect(&node.url()).await.map_err(Failure::connection)?));
        }
        for (title, sql) in TOUR {
            println!("\n== {title}\n   {sql}");
            for (name, client) in &clients {
                let started = Instant::now();
                let answer = client
                    .query(&FragmentRequest { requester: "demo".into(), project: "tour".into(), ..FragmentRequest::new(*sql) })
                    .await
                    .map_err(Failure::query)?;
                let table = pretty_format_batches(&answer.batches).map_err(Failure::query)?;
                println!("-- {name} ({:.0} ms)\n{table}", started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        println!("\n== A row-level question is refused by every node\n   {REFUSED}");
        for (name, client) in &clients {
            match client.query(&FragmentRequest::new(REFUSED)).await {
                Ok(_) => return Err(Failure::query(format!("{name} answered a row-level query"))),
                Err(e) => println!("-- {name}: {e}"),
            }
        }
        for trust in &trusts {
            println!("audit log: {}", trust.dir.join("audit.jsonl").display());
        }
        if args.keep_running {
            println!("\nNodes are running; ask one with e.g.\n  tessera ask --node {} -c \"SELECT count(*) FROM apc_episodes\"\nCtrl-C stops them.", nodes[0].1.url());
            let _ = tokio::signal::ctrl_c().await;
        }
        for (_, node) in nodes {
            node.stop().await;
        }
        Ok(())
    })
}
