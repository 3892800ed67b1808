//! `tessera demo`: three synthetic trusts, their nodes, and a few questions asked of each.
//!
//! The tour asks real questions through the coordinator and shows, for each, the merged answer,
//! which trusts answered, and the fragment SQL every trust received. Then it shows a row-level
//! question refused by the coordinator and by every trust.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use datafusion::arrow::util::pretty::pretty_format_batches;
use tessera_engine::coordinator::config::{FederationSection, NodeEntry};
use tessera_engine::coordinator::{Coordinator, FederationConfig};
use tessera_flight::client::NodeClient;
use tessera_flight::node::{RunningNode, TrustNode};
use tessera_flight::{FragmentRequest, NodeConfig};
use tessera_schemas::Catalog;

use super::gen::{generate_with_configs, GenArgs};
use super::query;
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

/// The questions of the tour: a title and the SQL a researcher types.
const TOUR: &[(&str, &str)] = &[
    (
        "Admissions per trust per month (first quarter of 2024)",
        "SELECT provider_code, date_trunc('month', admission_date) AS month, count(*) AS admissions \
         FROM apc_episodes WHERE admission_date >= DATE '2024-01-01' AND admission_date < DATE '2024-04-01' \
         GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "Mean and standard deviation of length of stay by specialty (emergency admissions)",
        "SELECT treatment_specialty, count(*) AS spells, round(avg(los_days), 2) AS mean_los, \
         round(stddev(los_days), 2) AS sd_los FROM apc_episodes WHERE admission_method LIKE '2%' \
         GROUP BY 1 HAVING count(*) >= 100 ORDER BY mean_los DESC LIMIT 6",
    ),
    (
        "A&E four-hour performance by trust (type 1 departments)",
        "SELECT provider_code, count(*) AS attendances, \
         round(100.0 * avg(CASE WHEN minutes_in_department <= 240 THEN 1.0 ELSE 0.0 END), 1) AS pct_within_4h \
         FROM ec_attendances WHERE department_type = '01' GROUP BY 1 ORDER BY 1",
    ),
    (
        "Day-case rate of elective admissions by specialty",
        "SELECT treatment_specialty, count(*) AS electives, \
         round(100.0 * avg(CASE WHEN patient_class = '2' THEN 1.0 ELSE 0.0 END), 1) AS day_case_pct \
         FROM apc_episodes WHERE admission_method LIKE '1%' GROUP BY 1 ORDER BY day_case_pct DESC LIMIT 6",
    ),
    (
        "Outpatient did-not-attend rate by trust",
        "SELECT provider_code, count(*) AS appointments, \
         round(100.0 * avg(CASE WHEN attended = 'did_not_attend' THEN 1.0 ELSE 0.0 END), 2) AS dna_pct \
         FROM op_appointments GROUP BY 1 ORDER BY 1",
    ),
    (
        "Cost-weighted activity per FTE, per trust and month (productivity)",
        "WITH activity AS ( \
           SELECT a.provider_code, date_trunc('month', a.admission_date) AS month, sum(r.unit_cost_gbp) AS weighted_activity \
           FROM apc_episodes a JOIN ref_unit_costs r \
             ON a.treatment_specialty = r.treatment_specialty AND a.patient_class = r.patient_class \
           GROUP BY 1, 2), \
         staff AS (SELECT provider_code, month, sum(fte) AS fte FROM workforce_finance_monthly GROUP BY 1, 2) \
         SELECT activity.provider_code, CAST(activity.month AS DATE) AS month, \
                round(weighted_activity / fte, 1) AS gbp_activity_per_fte \
         FROM activity JOIN staff ON activity.provider_code = staff.provider_code AND CAST(activity.month AS DATE) = staff.month \
         WHERE staff.month >= DATE '2025-01-01' ORDER BY 1, 2",
    ),
    (
        "A cohort: emergency admissions of people over 70 by age band, sex and deprivation (largest cells)",
        "SELECT age_band, sex, imd_decile, count(*) AS admissions FROM apc_episodes \
         WHERE age_band IN ('70-79', '80+') AND admission_method LIKE '2%' \
         GROUP BY 1, 2, 3 ORDER BY admissions DESC, 1, 2, 3 LIMIT 8",
    ),
];

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
            println!("trust node {} listening on {}", trust.provider, running.url());
            nodes.push((trust.provider.clone(), running));
        }
        let federation = FederationConfig {
            federation: FederationSection {
                requester: "demo@tessera".into(),
                project: "demo-tour".into(),
                ..FederationSection::default()
            },
            nodes: nodes
                .iter()
                .map(|(name, node)| NodeEntry {
                    name: name.clone(),
                    url: node.url(),
                })
                .collect(),
        };
        let coordinator = Coordinator::new(federation.clone(), &catalog).map_err(query::failure)?;
        for (i, (title, sql)) in TOUR.iter().enumerate() {
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            println!("\n== {}. {title}\n{sql}\n", i + 1);
            let result = coordinator.query(&sql).await.map_err(query::failure)?;
            let table = pretty_format_batches(&result.batches).map_err(Failure::query)?;
            println!("{table}");
            println!(
                "{} in {:.0} ms",
                result.provenance.summary(),
                result.elapsed.as_secs_f64() * 1000.0
            );
            for (k, fragment) in result.provenance.fragments.iter().enumerate() {
                println!("  fragment {} sent to each trust: {fragment}", k + 1);
            }
        }
        println!("\n== A row-level question is refused\n{REFUSED}");
        match coordinator.query(REFUSED).await {
            Ok(_) => return Err(Failure::query("the coordinator answered a row-level query")),
            Err(e) => println!("error: {}", e.message),
        }
        println!("Each trust asked directly refuses it too:");
        for (name, node) in &nodes {
            let client = NodeClient::connect(&node.url()).await.map_err(Failure::connection)?;
            match client.query(&FragmentRequest::new(REFUSED)).await {
                Ok(_) => return Err(Failure::query(format!("{name} answered a row-level query"))),
                Err(e) => println!("  {name}: {e}"),
            }
        }
        for trust in &trusts {
            println!(
                "audit log of {}: {}",
                trust.provider,
                trust.dir.join("audit.jsonl").display()
            );
        }
        if args.keep_running {
            let path = out.join("federation.toml");
            std::fs::write(&path, federation.to_toml())
                .map_err(|e| Failure::query(format!("{}: {e}", path.display())))?;
            println!(
                "\nThe nodes keep running. In another terminal:\n  tessera query --config {}\n\n{}\nCtrl-C stops them.",
                path.display(),
                federation.to_toml()
            );
            let _ = tokio::signal::ctrl_c().await;
        }
        for (_, node) in nodes {
            node.stop().await;
        }
        Ok(())
    })
}
