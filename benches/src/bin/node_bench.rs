//! Generator throughput and trust-node query latency, measured side by side in one run.
//!
//! For each query: the node over Flight (plan, policy check, execution, audit fsync, transfer)
//! against the same SQL run by a plain DataFusion session on the same Parquet files.
//!
//! `cargo run --release -p tessera-benches --bin node_bench -- --rows 1000000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use tessera_benches::summarise;
use tessera_node::node::TrustNode;
use tessera_node::NodeConfig;
use tessera_protocol::client::NodeClient;
use tessera_protocol::{FragmentRequest, RequestContext};
use tessera_schemas::gen::{generate, GenConfig};

#[derive(Parser)]
struct Args {
    /// Admitted patient care episodes for the one benchmark trust.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Timed runs per query (after one warm-up run).
    #[arg(long, default_value_t = 20)]
    iterations: usize,
}

const QUERIES: &[(&str, &str)] = &[
    ("count", "SELECT count(*) FROM apc_episodes"),
    (
        "LOS by specialty",
        "SELECT treatment_specialty, count(*), avg(los_days), stddev(los_days) FROM apc_episodes WHERE admission_method LIKE '2%' GROUP BY 1",
    ),
    (
        "A&E 4-hour",
        "SELECT department_type, count(*), sum(CASE WHEN minutes_in_department <= 240 THEN 1 ELSE 0 END) FROM ec_attendances GROUP BY 1",
    ),
    (
        "cost-weighted activity",
        "SELECT date_trunc('month', a.admission_date), sum(r.unit_cost_gbp) FROM apc_episodes a JOIN ref_unit_costs r \
         ON a.treatment_specialty = r.treatment_specialty AND a.patient_class = r.patient_class GROUP BY 1",
    ),
    (
        "cohort age x sex x IMD",
        "SELECT age_band, sex, imd_decile, count(*), count(DISTINCT person_id) FROM apc_episodes GROUP BY 1, 2, 3",
    ),
];

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let (dir, catalog) = tessera_benches::start();

    let started = Instant::now();
    let trusts = generate(
        &GenConfig {
            out: dir.path().to_path_buf(),
            providers: vec!["RRK".into()],
            rows: args.rows,
            seed: 7,
        },
        &catalog,
    )
    .expect("generation");
    let gen_secs = started.elapsed().as_secs_f64();
    let total_rows: u64 = trusts[0].tables.iter().map(|t| t.rows).sum();
    println!("## Generator\n");
    println!("| apc_episodes rows | all rows (4 tables) | seconds | episodes/s | rows/s |");
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {total_rows} | {gen_secs:.2} | {:.0} | {:.0} |\n",
        args.rows,
        args.rows as f64 / gen_secs,
        total_rows as f64 / gen_secs
    );

    let trust = &trusts[0];
    let tables = trust.tables.iter().map(|t| t.table.clone()).collect::<Vec<_>>();
    let mut config = NodeConfig::for_trust_dir("RRK", &trust.dir, "127.0.0.1:0", &tables);
    config.policy.max_groups = 100_000;
    let certs =
        tessera_protocol::dev_certs::write_dev_certs(&dir.path().join("certs"), &["RRK".into()]).expect("certificates");
    tessera_support::configure_test_node(&mut config, &certs);
    let node = TrustNode::start(&config, &catalog).await.expect("node starts");
    let running = node.spawn("127.0.0.1:0".parse().unwrap()).await.expect("node binds");
    let tls = tessera_support::coordinator_tls(certs.ca.parent().expect("a folder"));
    let client = NodeClient::connect(&running.url(), Some(&tls))
        .await
        .expect("client connects");

    let direct = tessera_policy::session::new_session(None).expect("session");
    for t in &trust.tables {
        let url = ListingTableUrl::parse(t.path.to_str().unwrap()).unwrap();
        let options = ListingOptions::new(Arc::new(ParquetFormat::default().with_force_view_types(false)));
        let schema = catalog.contract(&t.table).unwrap().arrow_schema();
        let table = ListingTable::try_new(
            ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(schema),
        )
        .unwrap();
        direct.register_table(t.table.as_str(), Arc::new(table)).unwrap();
    }
    tessera_node::tables::register_public(&direct, &catalog, catalog.contract("ref_unit_costs").unwrap()).unwrap();

    println!(
        "## Node query latency ({} episodes, {} iterations, ms)\n",
        args.rows, args.iterations
    );
    println!("| query | groups | node p50 | node p95 | DataFusion direct p50 | node / direct |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, sql) in QUERIES {
        let request = FragmentRequest::with_context(*sql, RequestContext::new("bench", ""));
        let groups = client.query(&request).await.expect("node answers").num_rows();
        direct.sql(sql).await.unwrap().collect().await.unwrap();
        let (mut node_times, mut direct_times) = (Vec::new(), Vec::new());
        // Interleave the two so machine noise hits both alike.
        for _ in 0..args.iterations {
            node_times.push(time(|| async { client.query(&request).await.map(|_| ()).expect("node answers") }).await);
            direct_times
                .push(time(|| async { direct.sql(sql).await.unwrap().collect().await.map(|_| ()).unwrap() }).await);
        }
        let (node_p50, node_p95) = summarise(node_times);
        let (direct_p50, _) = summarise(direct_times);
        println!(
            "| {name} | {groups} | {node_p50:.1} | {node_p95:.1} | {direct_p50:.1} | {:.2} |",
            node_p50 / direct_p50
        );
    }
    running.stop().await;
}

async fn time<F: std::future::Future<Output = ()>>(f: impl FnOnce() -> F) -> Duration {
    let started = Instant::now();
    f().await;
    started.elapsed()
}
