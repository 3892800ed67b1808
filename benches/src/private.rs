//! Differential privacy in the benchmarks: nodes of the same trusts in `dp` mode, questions
//! asked at a new spend each time (a kept answer costs nothing and would time nothing), and
//! the error of released counts by the size of their cell, against the standard deviation each
//! answer states.

use std::collections::HashMap;
use std::path::Path;

use datafusion::arrow::array::RecordBatch;
use tessera_coordinator::{Coordinator, QueryResult};
use tessera_node::node::{RunningNode, TrustNode};
use tessera_node::NodeConfig;
use tessera_protocol::dev_certs::DevCerts;
use tessera_protocol::names::NOISE_SD_METADATA;
use tessera_schemas::gen::GeneratedTrust;
use tessera_schemas::Catalog;

/// A node for each trust, in `sdc` mode (`ledgers: None`, the trusts' default policy) or in `dp`
/// mode with its privacy ledger in `ledgers`.
pub async fn start_nodes(
    trusts: &[GeneratedTrust],
    certs: &DevCerts,
    catalog: &Catalog,
    ledgers: Option<&Path>,
) -> Vec<(String, RunningNode)> {
    let mut running = Vec::new();
    for trust in trusts {
        let tables = trust.tables.iter().map(|t| t.table.clone()).collect::<Vec<_>>();
        let mut config = NodeConfig::for_trust_dir(&trust.provider, &trust.dir, "127.0.0.1:0", &tables);
        tessera_support::configure_test_node(&mut config, certs);
        if let Some(dir) = ledgers {
            config.privacy.mode = tessera_node::node::dp::PrivacyMode::Dp;
            config.privacy.ledger = dir.join(format!("{}.jsonl", trust.provider));
            // Room for every question the benchmark asks anew.
            config.privacy.project_budget = 1000.0;
        }
        let node = TrustNode::start(&config, catalog).await.expect("node starts");
        running.push((
            trust.provider.clone(),
            node.spawn("127.0.0.1:0".parse().unwrap()).await.expect("node binds"),
        ));
    }
    running
}

/// Asks `sql` at a spend of ρ = 0.05 + n millionths, new for each `n`: a new question at each
/// trust (a kept answer is for one spend), charged and noised afresh.
pub async fn ask_anew(coordinator: &Coordinator, n: usize, sql: &str) -> QueryResult {
    let mut context = coordinator.context();
    context.privacy_spend = Some(50_000 + n as u64);
    coordinator.query_as(&context, sql).await.expect("private answer")
}

/// One released count beside the exact one, and the sd its answer states.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub exact: f64,
    pub noisy: f64,
    pub sd: f64,
}

/// The samples of column `column` of a private answer against the exact one (rows matched by
/// their other columns; a row only the private answer has, an empty cell, counts as exact 0).
pub fn samples(exact: &[RecordBatch], private: &QueryResult, column: &str) -> Vec<Sample> {
    let sd = private
        .schema
        .field_with_name(column)
        .ok()
        .and_then(|f| f.metadata().get(NOISE_SD_METADATA))
        .and_then(|v| v.parse::<f64>().ok())
        .expect("a private count states its sd");
    let truth = by_labels(exact, column).into_iter().collect::<HashMap<_, _>>();
    by_labels(&private.batches, column)
        .into_iter()
        .map(|(labels, noisy)| Sample {
            exact: truth.get(&labels).copied().unwrap_or(0.0),
            noisy,
            sd,
        })
        .collect()
}

/// Each row's other columns as text, and `column` as a number.
fn by_labels(batches: &[RecordBatch], column: &str) -> Vec<(Vec<String>, f64)> {
    use datafusion::arrow::array::{Array, Float64Array, StringArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::DataType;
    let mut out = Vec::new();
    for batch in batches {
        let index = batch.schema().index_of(column).expect("the count column");
        let numbers = cast(batch.column(index), &DataType::Float64).expect("a number");
        let numbers = numbers.as_any().downcast_ref::<Float64Array>().expect("Float64");
        let labels = (0..batch.num_columns())
            .filter(|&c| c != index)
            .map(|c| cast(batch.column(c), &DataType::Utf8).expect("labels cast to text"))
            .collect::<Vec<_>>();
        for row in 0..batch.num_rows() {
            let text = labels
                .iter()
                .map(|l| {
                    let l = l.as_any().downcast_ref::<StringArray>().expect("text");
                    match l.is_null(row) {
                        true => "NULL".to_string(),
                        false => l.value(row).to_string(),
                    }
                })
                .collect();
            out.push((text, numbers.value(row)));
        }
    }
    out
}

/// The error of released counts whose exact value lies in one band.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorBand {
    /// E.g. `1,000`: counts from a half to twice that.
    pub about: &'static str,
    pub cells: usize,
    /// √(mean of (noisy − exact)²).
    pub rms: f64,
    /// Mean of noisy − exact: the bias (from the cap on each person's records; the noise has
    /// mean zero).
    pub bias: f64,
    /// The mean sd the answers stated.
    pub stated_sd: f64,
    /// Mean of |noisy − exact| / exact.
    pub mean_relative: f64,
    /// Share of cells within 2 % of the exact count.
    pub within_2pct: f64,
}

/// The bands of true counts the table reports: about 10, 100, 1,000, 10,000 and 100,000 (from a
/// half to twice each).
const BANDS: [(&str, f64); 5] = [
    ("10", 10.0),
    ("100", 100.0),
    ("1,000", 1_000.0),
    ("10,000", 10_000.0),
    ("100,000", 100_000.0),
];

/// `samples` summarised by band of their exact count (bands with no sample are left out).
pub fn error_by_count(samples: &[Sample]) -> Vec<ErrorBand> {
    BANDS
        .iter()
        .filter_map(|&(about, centre)| {
            let band = samples
                .iter()
                .filter(|s| s.exact >= centre / 2.0 && s.exact < centre * 2.0)
                .collect::<Vec<_>>();
            let n = band.len() as f64;
            (!band.is_empty()).then(|| ErrorBand {
                about,
                cells: band.len(),
                rms: (band.iter().map(|s| (s.noisy - s.exact).powi(2)).sum::<f64>() / n).sqrt(),
                bias: band.iter().map(|s| s.noisy - s.exact).sum::<f64>() / n,
                stated_sd: band.iter().map(|s| s.sd).sum::<f64>() / n,
                mean_relative: band.iter().map(|s| (s.noisy - s.exact).abs() / s.exact).sum::<f64>() / n,
                within_2pct: band
                    .iter()
                    .filter(|s| (s.noisy - s.exact).abs() <= 0.02 * s.exact)
                    .count() as f64
                    / n,
            })
        })
        .collect()
}
