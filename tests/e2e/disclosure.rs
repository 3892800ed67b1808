//! Disclosure control checked against hand-computed expectations on small, hand-made trusts.
//!
//! Two trusts hold these admitted episodes (age band: rows at RRK + rows at RTH = total):
//! - `18-29`: 2 + 1 = 3 episodes, every stay 1 day;
//! - `30-44`: 8 + 4 = 12 episodes, every stay 3 days;
//! - `45-59`: 20 + 3 = 23 episodes, every stay 5 days.
//!
//! So with threshold 10 and rounding to 5: `18-29` is suppressed (3 < 10); `30-44` releases
//! count 10 (12 rounds to 10) and mean 3; `45-59` releases 25 (23 rounds to 25) and mean 5.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Date32Array, Float64Array, Int32Array, Int8Array, RecordBatch, StringArray};
use tessera_coordinator::config::{FederationSection, NodeEntry};
use tessera_coordinator::{Coordinator, FederationConfig};
use tessera_disclosure::{DisclosureConfig, Mode, Perturbation, Zeros};
use tessera_node::NodeConfig;
use tessera_protocol::dev_certs::{write_dev_certs, DevCerts};
use tessera_schemas::Catalog;
use tessera_support::{check_cases, configure_test_node, null, Case, Cell, Footer, TestNode};

/// (age band, episodes, length of stay, cost) per trust.
const RRK: &[(&str, usize, i32, f64)] = &[
    ("18-29", 2, 1, 900.0),
    ("30-44", 8, 3, 2_000.0),
    ("45-59", 20, 5, 3_000.0),
];
const RTH: &[(&str, usize, i32, f64)] = &[
    ("18-29", 1, 1, 950.0),
    ("30-44", 4, 3, 2_100.0),
    ("45-59", 3, 5, 3_100.0),
];

/// Writes a trust's `apc_episodes.parquet` with the given groups (every other column fixed).
/// Costs vary a little within a group (the row's position is added), so correlations are defined.
fn write_trust(dir: &Path, provider: &str, groups: &[(&str, usize, i32, f64)]) {
    let rows = groups
        .iter()
        .flat_map(|(age, n, los, cost)| std::iter::repeat_n((*age, *los, *cost), *n))
        .enumerate()
        .map(|(i, (age, los, cost))| (age, los, cost + i as f64))
        .collect::<Vec<_>>();
    write_rows(dir, provider, &rows);
}

/// Writes a trust's `apc_episodes.parquet` with one episode per (age band, length of stay, cost).
pub(crate) fn write_rows(dir: &Path, provider: &str, rows: &[(&str, i32, f64)]) {
    std::fs::create_dir_all(dir).unwrap();
    let n = rows.len();
    let schema = Catalog::builtin().contract("apc_episodes").unwrap().arrow_schema();
    let text = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(
            (0..n).map(|i| format!("{provider}-{i}")).collect::<Vec<_>>(),
        )),
        text(provider),
        Arc::new(Date32Array::from(vec![19_844; n])),
        Arc::new(Date32Array::from(rows.iter().map(|r| 19_844 + r.1).collect::<Vec<_>>())),
        Arc::new(Int32Array::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
        text("21"),
        text("1"),
        text("300"),
        text("R69"),
        Arc::new(StringArray::from(vec![None::<&str>; n])),
        text("F"),
        Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
        Arc::new(Int8Array::from(vec![5i8; n])),
        Arc::new(Float64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    let file = std::fs::File::create(dir.join("apc_episodes.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

pub(crate) struct Small {
    dir: tempfile::TempDir,
    pub(crate) certs: DevCerts,
    pub(crate) nodes: Vec<TestNode>,
    pub(crate) entries: Vec<NodeEntry>,
}

impl Small {
    /// The folder holding the trusts' data (and any release logs of the test).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The coordinator's `[tls]` for these trusts.
    pub(crate) fn tls(&self) -> tessera_coordinator::TlsSection {
        tessera_support::tls_section(&self.certs)
    }
}

pub(crate) async fn small_federation() -> Small {
    federation_of(&[("RRK", RRK), ("RTH", RTH)], write_trust).await
}

/// Nodes for `trusts` (ODS code and its data), each written by `write`.
pub(crate) async fn federation_of<T: ?Sized>(trusts: &[(&str, &T)], write: fn(&Path, &str, &T)) -> Small {
    let dir = tempfile::tempdir().unwrap();
    let names = trusts.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>();
    let certs = write_dev_certs(&dir.path().join("certs"), &names).unwrap();
    let mut nodes = Vec::new();
    let mut entries = Vec::new();
    for (provider, data) in trusts {
        let trust = dir.path().join(provider);
        write(&trust, provider, data);
        let mut config = NodeConfig::for_trust_dir(provider, &trust, "127.0.0.1:0", &["apc_episodes".into()]);
        configure_test_node(&mut config, &certs);
        let node = TestNode::start(&config).await;
        entries.push(NodeEntry {
            name: provider.to_string(),
            url: node.running.url(),
        });
        nodes.push(node);
    }
    Small {
        dir,
        certs,
        nodes,
        entries,
    }
}

/// A coordinator for `small` with its own fresh release log (unless `disclosure` names one).
pub(crate) fn coordinator(small: &Small, mut disclosure: DisclosureConfig) -> Coordinator {
    static LOGS: AtomicUsize = AtomicUsize::new(0);
    if disclosure.release_log.is_none() {
        let n = LOGS.fetch_add(1, Ordering::Relaxed);
        disclosure.release_log = Some(small.dir.path().join(format!("releases-{n}.jsonl")));
    }
    let config = FederationConfig {
        federation: FederationSection::default(),
        nodes: small.entries.clone(),
        disclosure,
        tls: Some(small.tls()),
        server: None,
    };
    Coordinator::new(config, &Catalog::builtin()).unwrap()
}

/// The rules these tests check values against: the defaults without perturbation, with counts
/// rounded to 5 (so every expected value can be written down).
pub(crate) fn exact_rules() -> DisclosureConfig {
    DisclosureConfig {
        perturbation: Perturbation::Off,
        round_to: 5,
        ..DisclosureConfig::default()
    }
}

/// The footer of a result under [`exact_rules`].
pub(crate) const RULES: &str = "groups of fewer than 10 records withheld; statistics with a class of fewer than 10 \
     records shown as NULL; counts rounded to 5; sums of sensitive measures checked for dominance (NK k = 0.9, p = 0.1)";

/// Every rule checked on the small federation: one entry per (rules, SQL, released cells, footer).
fn cases() -> Vec<Case> {
    let opensafely = DisclosureConfig {
        threshold: 1,
        redact_at_or_below: 7,
        ..exact_rules()
    };
    let filtered = "SELECT count(*) FILTER (WHERE los_days > 180) AS none, count(*) FILTER (WHERE age_band = '18-29') \
                    AS few, count(*) FILTER (WHERE age_band = '30-44') AS some, count(*) AS everyone FROM apc_episodes";
    let by_age =
        "SELECT age_band, count(*) AS n, avg(los_days) AS mean_los, sum(los_days) AS bed_days FROM apc_episodes \
                  GROUP BY age_band ORDER BY age_band";
    // 12 stays of 3 days and 23 of 5: the sample variance is (683 - 151²/35) / 34.
    let variance = (683.0 - 151.0 * 151.0 / 35.0) / 34.0;
    vec![
        // The 18-29 row (3 records) is not released at all, labels included; the footer names
        // the rules in force and never counts what was withheld.
        Case::rows_with(
            "small cells withheld, counts rounded",
            exact_rules(),
            by_age,
            vec![
                vec![Cell::from("30-44"), Cell::Int(10), Cell::Float(3.0), Cell::Int(36)],
                vec![Cell::from("45-59"), Cell::Int(25), Cell::Float(5.0), Cell::Int(115)],
            ],
            Footer::Is(RULES),
        ),
        Case::rows_with(
            "disclosure control off (confirmed) is exact",
            DisclosureConfig::off(),
            "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band ORDER BY age_band",
            vec![
                vec![Cell::from("18-29"), Cell::Int(3)],
                vec![Cell::from("30-44"), Cell::Int(12)],
                vec![Cell::from("45-59"), Cell::Int(23)],
            ],
            Footer::StartsWith("WARNING: disclosure control is OFF"),
        ),
        // OpenSAFELY style, threshold 1: none = 0 (a zero: suppressed), few = 3 (≤ 7: redacted),
        // some = 12 → 10, everyone = 38 → 40.
        Case::rows_with(
            "OpenSAFELY redaction and rounding",
            opensafely.clone(),
            filtered,
            vec![vec![null(), null(), Cell::Int(10), Cell::Int(40)]],
            Footer::Contains("counts ≤ 7 redacted; counts rounded to 5"),
        ),
        Case::rows(
            "zeros released when configured",
            DisclosureConfig {
                zeros: Zeros::Release,
                ..opensafely
            },
            filtered,
            vec![vec![Cell::Int(0), null(), Cell::Int(10), Cell::Int(40)]],
        ),
        // Threshold 10: few (3) suppressed; some = 12 and everyone = 38 released exactly.
        Case::rows_with(
            "no rounding",
            DisclosureConfig {
                round_to: 1,
                ..exact_rules()
            },
            filtered,
            vec![vec![null(), null(), Cell::Int(12), Cell::Int(38)]],
            Footer::Lacks("rounded"),
        ),
        // 30-44 and 45-59 have 35 pairs: released.
        Case::rows(
            "a model of enough records",
            exact_rules(),
            "SELECT covar_samp(los_days, los_days) AS v FROM apc_episodes WHERE age_band IN ('30-44', '45-59')",
            vec![vec![Cell::Float(variance)]],
        ),
        // With threshold 5 RTH's 7 records pass the threshold, but 7 - 2 = 5 residual df do not.
        Case::rows(
            "a model needs ten residual degrees of freedom",
            DisclosureConfig {
                threshold: 5,
                ..exact_rules()
            },
            "SELECT covar_samp(los_days, los_days) AS v FROM apc_episodes WHERE age_band IN ('30-44', '45-59') \
             AND provider_code = 'RTH'",
            vec![vec![null()]],
        ),
        // Probing for small groups with HAVING finds nothing: the small count is already gone.
        Case::rows(
            "HAVING sees only protected values",
            exact_rules(),
            "SELECT age_band FROM apc_episodes GROUP BY age_band HAVING count(*) < 5",
            vec![],
        ),
        // ORDER BY … LIMIT 1 cannot single out the suppressed cell either.
        Case::rows(
            "ORDER BY sees only protected values",
            exact_rules(),
            "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band ORDER BY n ASC NULLS LAST LIMIT 1",
            vec![vec![Cell::from("30-44"), Cell::Int(10)]],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_cells_follow_the_configured_rules() {
    let small = small_federation().await;
    check_cases(&cases(), |rules| coordinator(&small, rules.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_statistic_says_how_it_was_released_and_the_lines_travel_with_the_data() {
    let small = small_federation().await;
    let result = coordinator(&small, exact_rules())
        .query("SELECT age_band, count(*) AS n, avg(los_days) AS mean_los, sum(los_days) AS bed_days FROM apc_episodes GROUP BY age_band ORDER BY age_band")
        .await
        .unwrap();
    let status = |i: usize| {
        result
            .schema
            .field(i)
            .metadata()
            .get(tessera_coordinator::STATUS_METADATA)
            .cloned()
    };
    assert_eq!(
        (status(0), status(1), status(2), status(3)),
        (None, Some("rounded".into()), Some("exact".into()), Some("exact".into()))
    );
    // The same lines travel with the data, as schema metadata of the result and of its batches.
    for schema in [result.schema.clone(), result.batches[0].schema()] {
        assert_eq!(
            schema.metadata().get(tessera_coordinator::DISCLOSURE_METADATA),
            Some(&result.disclosure)
        );
        assert_eq!(
            schema.metadata().get(tessera_coordinator::PROVENANCE_METADATA),
            Some(&"2 of 2 trusts answered (RRK, RTH); data as at 2024-03-31".to_string())
        );
    }
}

#[test]
fn turning_disclosure_control_off_must_be_confirmed() {
    let config = DisclosureConfig {
        mode: Mode::Off,
        ..exact_rules()
    };
    assert_eq!(
        config.check().unwrap_err(),
        "[disclosure] mode = \"off\" releases exact small counts; set allow_unsafe_output = true to confirm"
    );
    assert_eq!(
        DisclosureConfig {
            threshold: 0,
            ..exact_rules()
        }
        .check()
        .unwrap_err(),
        "[disclosure] threshold: must be from 1 to 1000000"
    );
    assert!(DisclosureConfig::off().check().is_ok());
}
