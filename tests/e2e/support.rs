//! Helpers for Tessera's end-to-end tests: real nodes on real ports, and an oracle that reads the
//! generated Parquet files directly (no DataFusion, no SQL) to compute expected answers.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int8Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_flight::client::{ClientError, NodeAnswer, NodeClient};
use tessera_flight::node::{RunningNode, TrustNode};
use tessera_flight::{FragmentRequest, NodeConfig};
use tessera_schemas::gen::{generate, GenConfig, GeneratedTrust};
use tessera_schemas::Catalog;

/// The coordinator token test federations use; nodes are configured with its SHA-256.
pub const COORDINATOR_TOKEN: &str = "test-coordinator-token-0123456789abcdef-0123456789";

/// Makes `config` recognise the test coordinator (see [`COORDINATOR_TOKEN`]), with a record key
/// secret fixed per trust, so that tests see the same noise on every run.
pub fn trust_test_coordinator(config: &mut NodeConfig) {
    config.access.coordinator_token_sha256 = Some(tessera_engine::auth::token_digest(COORDINATOR_TOKEN));
    config.access.record_key_secret = Some(tessera_engine::auth::token_digest(&format!(
        "secret of {}",
        config.node.name
    )));
}

/// Generated data for some trusts in a temporary folder.
pub struct TestData {
    pub dir: tempfile::TempDir,
    pub trusts: Vec<GeneratedTrust>,
}

impl TestData {
    /// Generates `rows` episodes across `providers` with `seed`.
    pub fn generate(providers: &[&str], rows: u64, seed: u64) -> TestData {
        let dir = tempfile::tempdir().expect("temporary folder");
        let config = GenConfig {
            out: dir.path().to_path_buf(),
            providers: providers.iter().map(|p| p.to_string()).collect(),
            rows,
            seed,
        };
        let trusts = generate(&config, &Catalog::builtin()).expect("generation succeeds");
        TestData { dir, trusts }
    }

    /// The folder of trust `provider`.
    pub fn trust_dir(&self, provider: &str) -> PathBuf {
        self.dir.path().join(provider)
    }

    /// A node configuration for `provider` (port chosen at spawn), with `edit` applied.
    pub fn node_config(&self, provider: &str, edit: impl FnOnce(&mut NodeConfig)) -> NodeConfig {
        let trust = self
            .trusts
            .iter()
            .find(|t| t.provider == provider)
            .expect("provider generated");
        let tables = trust.tables.iter().map(|t| t.table.clone()).collect::<Vec<_>>();
        let mut config = NodeConfig::for_trust_dir(provider, &trust.dir, "127.0.0.1:0", &tables);
        trust_test_coordinator(&mut config);
        edit(&mut config);
        config
    }
}

/// A node serving in-process, with a client connected to it.
pub struct TestNode {
    pub running: RunningNode,
    pub client: NodeClient,
    pub audit_log: PathBuf,
}

impl TestNode {
    /// Starts a node for `config` on a free port.
    pub async fn start(config: &NodeConfig) -> TestNode {
        let node = TrustNode::start(config, &Catalog::builtin())
            .await
            .expect("node starts");
        let running = node.spawn("127.0.0.1:0".parse().unwrap()).await.expect("node binds");
        let client = NodeClient::connect(&running.url()).await.expect("client connects");
        TestNode {
            running,
            client,
            audit_log: config.audit_path(),
        }
    }

    /// Sends `sql` as user `tester` in project `battery`.
    pub async fn ask(&self, sql: &str) -> Result<NodeAnswer, ClientError> {
        let request = FragmentRequest {
            requester: "tester".into(),
            project: "battery".into(),
            ..FragmentRequest::new(sql)
        };
        self.client.query(&request).await
    }
}

/// One value of a result, for comparison with independently computed expectations.
#[derive(Debug, Clone)]
pub enum Cell {
    Int(i64),
    Float(f64),
    Str(String),
    Null,
}

impl Cell {
    fn sort_key(&self) -> String {
        match self {
            Cell::Int(i) => format!("{i:020}"),
            Cell::Float(f) => format!("{f:030.6}"),
            Cell::Str(s) => s.clone(),
            Cell::Null => "∅".into(),
        }
    }

    /// Equal, with floats within 1e-9 relative.
    pub fn matches(&self, other: &Cell) -> bool {
        match (self, other) {
            (Cell::Int(a), Cell::Int(b)) => a == b,
            (Cell::Float(a), Cell::Float(b)) => close(*a, *b),
            (Cell::Int(a), Cell::Float(b)) | (Cell::Float(b), Cell::Int(a)) => close(*a as f64, *b),
            (Cell::Str(a), Cell::Str(b)) => a == b,
            (Cell::Null, Cell::Null) => true,
            _ => false,
        }
    }
}

/// Relative closeness used by every float comparison in the tests.
pub fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

impl From<i64> for Cell {
    fn from(v: i64) -> Cell {
        Cell::Int(v)
    }
}
impl From<usize> for Cell {
    fn from(v: usize) -> Cell {
        Cell::Int(v as i64)
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Cell {
        Cell::Float(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Cell {
        Cell::Str(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Cell {
        Cell::Str(v)
    }
}

/// The rows of an answer as cells (dates and times as ISO text).
pub fn rows_of(batches: &[RecordBatch]) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    for batch in batches {
        let columns = batch.columns();
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| cell(c.as_ref(), i)).collect());
        }
    }
    rows
}

fn cell(array: &dyn Array, i: usize) -> Cell {
    if array.is_null(i) {
        return Cell::Null;
    }
    match array.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt32 | DataType::UInt64 => {
            let a = cast(&array.slice(i, 1), &DataType::Int64).unwrap();
            Cell::Int(a.as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(0))
        }
        DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            let a = cast(&array.slice(i, 1), &DataType::Float64).unwrap();
            Cell::Float(a.as_primitive::<Float64Type>().value(0))
        }
        _ => {
            let a = cast(&array.slice(i, 1), &DataType::Utf8).unwrap();
            Cell::Str(a.as_string::<i32>().value(0).to_string())
        }
    }
}

/// Compares an answer with expected rows, in any order unless `ordered`; returns a description of the first difference.
pub fn compare(actual: &[Vec<Cell>], expected: &[Vec<Cell>], ordered: bool) -> Result<(), String> {
    let key = |row: &Vec<Cell>| row.iter().map(Cell::sort_key).collect::<Vec<_>>().join("|");
    let (mut a, mut e) = (actual.to_vec(), expected.to_vec());
    if !ordered {
        a.sort_by_key(key);
        e.sort_by_key(key);
    }
    if a.len() != e.len() {
        return Err(format!(
            "{} rows, expected {}\nactual: {a:?}\nexpected: {e:?}",
            a.len(),
            e.len()
        ));
    }
    for (ra, re) in a.iter().zip(&e) {
        if ra.len() != re.len() || !ra.iter().zip(re).all(|(x, y)| x.matches(y)) {
            return Err(format!("row {ra:?}, expected {re:?}"));
        }
    }
    Ok(())
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).expect("parquet file");
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn col_strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(name).unwrap().as_string::<i32>().clone();
            (0..a.len())
                .map(move |i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn col<T: datafusion::arrow::datatypes::ArrowPrimitiveType>(batches: &[RecordBatch], name: &str) -> Vec<T::Native> {
    batches
        .iter()
        .flat_map(|b| b.column_by_name(name).unwrap().as_primitive::<T>().values().to_vec())
        .collect()
}

fn bools(batches: &[RecordBatch], name: &str) -> Vec<bool> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(name).unwrap().as_boolean().clone();
            (0..a.len()).map(move |i| a.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

/// One admitted patient care episode, read straight from Parquet.
#[derive(Debug, Clone)]
pub struct Apc {
    pub person_id: String,
    pub admission_date: NaiveDate,
    pub los_days: i32,
    pub admission_method: String,
    pub patient_class: String,
    pub treatment_specialty: String,
    pub primary_diagnosis: String,
    pub sex: String,
    pub age_band: String,
    pub imd_decile: i8,
    pub cost_gbp: f64,
}

/// One A&E attendance.
#[derive(Debug, Clone)]
pub struct Ec {
    pub person_id: String,
    pub arrival_date: NaiveDate,
    pub minutes: i32,
    pub department_type: String,
    pub disposal: String,
}

/// One outpatient appointment.
#[derive(Debug, Clone)]
pub struct Op {
    pub first_attendance: bool,
    pub attended: String,
}

/// One workforce row.
#[derive(Debug, Clone)]
pub struct Workforce {
    pub staff_group: String,
    pub fte: f64,
}

/// A trust's data, held as plain Rust values.
pub struct Oracle {
    pub apc: Vec<Apc>,
    pub ec: Vec<Ec>,
    pub op: Vec<Op>,
    pub workforce: Vec<Workforce>,
    /// (specialty, patient class) → national unit cost.
    pub unit_costs: BTreeMap<(String, String), f64>,
}

impl Oracle {
    /// Reads the Parquet files of the trusts in `dirs` (all rows together).
    pub fn load(dirs: &[PathBuf]) -> Oracle {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let day = |d: i32| epoch + chrono::Days::new(d as u64);
        let mut oracle = Oracle {
            apc: vec![],
            ec: vec![],
            op: vec![],
            workforce: vec![],
            unit_costs: BTreeMap::new(),
        };
        for dir in dirs {
            let b = read(&dir.join("apc_episodes.parquet"));
            let s = |n: &str| {
                col_strings(&b, n)
                    .into_iter()
                    .map(|v| v.unwrap_or_default())
                    .collect::<Vec<_>>()
            };
            let (person, method, class, spec, diag, sex, age) = (
                s("person_id"),
                s("admission_method"),
                s("patient_class"),
                s("treatment_specialty"),
                s("primary_diagnosis"),
                s("sex"),
                s("age_band"),
            );
            let adm = col::<Date32Type>(&b, "admission_date");
            let los = col::<Int32Type>(&b, "los_days");
            let imd = col::<Int8Type>(&b, "imd_decile");
            let cost = col::<Float64Type>(&b, "cost_gbp");
            for i in 0..person.len() {
                oracle.apc.push(Apc {
                    person_id: person[i].clone(),
                    admission_date: day(adm[i]),
                    los_days: los[i],
                    admission_method: method[i].clone(),
                    patient_class: class[i].clone(),
                    treatment_specialty: spec[i].clone(),
                    primary_diagnosis: diag[i].clone(),
                    sex: sex[i].clone(),
                    age_band: age[i].clone(),
                    imd_decile: imd[i],
                    cost_gbp: cost[i],
                });
            }
            let b = read(&dir.join("ec_attendances.parquet"));
            let s = |n: &str| {
                col_strings(&b, n)
                    .into_iter()
                    .map(|v| v.unwrap_or_default())
                    .collect::<Vec<_>>()
            };
            let (person, dept, disposal) = (s("person_id"), s("department_type"), s("disposal"));
            let arrival = col::<TimestampMicrosecondType>(&b, "arrival_time");
            let minutes = col::<Int32Type>(&b, "minutes_in_department");
            for i in 0..person.len() {
                oracle.ec.push(Ec {
                    person_id: person[i].clone(),
                    arrival_date: day(arrival[i].div_euclid(86_400_000_000) as i32),
                    minutes: minutes[i],
                    department_type: dept[i].clone(),
                    disposal: disposal[i].clone(),
                });
            }
            let b = read(&dir.join("op_appointments.parquet"));
            let attended = col_strings(&b, "attended");
            let first = bools(&b, "first_attendance");
            for i in 0..first.len() {
                oracle.op.push(Op {
                    first_attendance: first[i],
                    attended: attended[i].clone().unwrap_or_default(),
                });
            }
            let b = read(&dir.join("workforce_finance_monthly.parquet"));
            let group = col_strings(&b, "staff_group");
            let fte = col::<Float64Type>(&b, "fte");
            for i in 0..fte.len() {
                oracle.workforce.push(Workforce {
                    staff_group: group[i].clone().unwrap_or_default(),
                    fte: fte[i],
                });
            }
        }
        for line in Catalog::builtin()
            .public_data("ref_unit_costs")
            .unwrap()
            .lines()
            .skip(1)
        {
            let parts = line.split(',').collect::<Vec<_>>();
            oracle
                .unit_costs
                .insert((parts[0].to_string(), parts[1].to_string()), parts[2].parse().unwrap());
        }
        oracle
    }
}

/// Groups `items` by `key` and folds each group with `value`; returns (key, value) rows.
pub fn group_by<T, K: Ord + Clone, V>(items: &[T], key: impl Fn(&T) -> K, value: impl Fn(&[&T]) -> V) -> Vec<(K, V)> {
    let mut groups: BTreeMap<K, Vec<&T>> = BTreeMap::new();
    for item in items {
        groups.entry(key(item)).or_default().push(item);
    }
    groups.into_iter().map(|(k, v)| (k, value(&v))).collect()
}

/// Sum of `f` over items, compensated (Kahan-Babuska) so the oracle's own rounding stays below the 1e-9 tolerance.
pub fn fsum<T>(items: &[&T], f: impl Fn(&T) -> f64) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for item in items {
        let x = f(item);
        let t = sum + x;
        c += if sum.abs() >= x.abs() {
            (sum - t) + x
        } else {
            (x - t) + sum
        };
        sum = t;
    }
    sum + c
}

/// Sample variance, population standard deviation (two-pass).
pub fn variance(values: &[f64], sample: bool) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let m2 = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
    m2 / if sample { n - 1.0 } else { n }
}

/// Pearson correlation (two-pass).
pub fn correlation(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum::<f64>();
    let sxx = x.iter().map(|a| (a - mx).powi(2)).sum::<f64>();
    let syy = y.iter().map(|b| (b - my).powi(2)).sum::<f64>();
    sxy / (sxx.sqrt() * syy.sqrt())
}

/// Several trusts' nodes, a coordinator over them, and a single DataFusion session over the union
/// of the same files (the reference every federated answer must equal).
pub struct Federation {
    pub data: TestData,
    pub nodes: Vec<TestNode>,
    pub coordinator: tessera_engine::coordinator::Coordinator,
    pub reference: datafusion::prelude::SessionContext,
}

impl Federation {
    /// Generates `rows` episodes across `providers`, starts a node per trust and a coordinator.
    pub async fn start(providers: &[&str], rows: u64, seed: u64) -> Federation {
        Federation::start_with(providers, rows, seed, |_| {}).await
    }

    /// As [`Federation::start`], with `edit` applied to the federation config.
    pub async fn start_with(
        providers: &[&str],
        rows: u64,
        seed: u64,
        edit: impl FnOnce(&mut tessera_engine::coordinator::FederationConfig),
    ) -> Federation {
        Federation::launch(providers, rows, seed, false, edit).await
    }

    /// Nodes under their default policy and a coordinator with the default disclosure control:
    /// what `tessera gen` sets up.
    pub async fn start_protected(providers: &[&str], rows: u64, seed: u64) -> Federation {
        Federation::launch(providers, rows, seed, true, |_| {}).await
    }

    async fn launch(
        providers: &[&str],
        rows: u64,
        seed: u64,
        protected: bool,
        edit: impl FnOnce(&mut tessera_engine::coordinator::FederationConfig),
    ) -> Federation {
        let data = TestData::generate(providers, rows, seed);
        let mut nodes = Vec::new();
        for p in providers {
            // The harness asks what the default policy refuses (day-level filters, min/max…).
            let config = data.node_config(p, |c| {
                c.policy.max_groups = 1_000_000;
                if !protected {
                    c.policy.profile = tessera_engine::Profile::ExactnessTest;
                }
            });
            nodes.push(TestNode::start(&config).await);
        }
        // Exactness is checked with disclosure control explicitly off.
        let disclosure = match protected {
            true => tessera_engine::disclosure::DisclosureConfig::default(),
            false => tessera_engine::disclosure::DisclosureConfig::off(),
        };
        let coordinator = coordinator_over(&data, &nodes, disclosure, edit);
        let dirs = data.trusts.iter().map(|t| t.dir.clone()).collect::<Vec<_>>();
        let reference =
            tessera_engine::reference::union_session(&dirs, &Catalog::builtin()).expect("reference session");
        Federation {
            data,
            nodes,
            coordinator,
            reference,
        }
    }

    /// Another coordinator over the same nodes (its own release log), e.g. with other rules.
    pub fn coordinator_with(
        &self,
        disclosure: tessera_engine::disclosure::DisclosureConfig,
    ) -> tessera_engine::coordinator::Coordinator {
        coordinator_over(&self.data, &self.nodes, disclosure, |_| {})
    }

    /// The reference answer: single-node DataFusion over the union of every trust's files.
    pub async fn reference(&self, sql: &str) -> datafusion::error::Result<Vec<RecordBatch>> {
        self.reference.sql(sql).await?.collect().await
    }
}

/// A coordinator for the nodes of `data`, with the test token and a release log of its own.
fn coordinator_over(
    data: &TestData,
    nodes: &[TestNode],
    disclosure: tessera_engine::disclosure::DisclosureConfig,
    edit: impl FnOnce(&mut tessera_engine::coordinator::FederationConfig),
) -> tessera_engine::coordinator::Coordinator {
    static LOGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut config = tessera_engine::coordinator::FederationConfig::new(
        "harness",
        "exactness",
        data.trusts
            .iter()
            .zip(nodes)
            .map(|(t, n)| (t.provider.clone(), n.running.url())),
    );
    config.disclosure = disclosure;
    config.federation.coordinator_token = Some(COORDINATOR_TOKEN.to_string());
    let n = LOGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    config.disclosure.release_log = Some(data.dir.path().join(format!("releases-{n}.jsonl")));
    edit(&mut config);
    tessera_engine::coordinator::Coordinator::new(config, &Catalog::builtin()).expect("coordinator")
}
