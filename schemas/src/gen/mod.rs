//! Seeded synthetic NHS-like data: the same seed and arguments give byte-identical files.
//!
//! Each trust gets its own folder with one Parquet file per table. Trusts differ in size, case
//! mix, length of stay, A&E performance, outpatient DNA rate, deprivation and staffing; activity
//! follows weekday and winter patterns; A&E times show the four-hour cliff. Generation streams in
//! batches of [`writer::BATCH_ROWS`] rows, so memory stays bounded whatever the row count.

mod apc;
mod clinical;
mod ec;
mod op;
mod people;
mod rng;
mod trust;
mod workforce;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::Catalog;

pub use trust::TrustProfile;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Output folder; each trust gets `out/<provider>/`.
    pub out: PathBuf,
    /// ODS provider codes of the trusts.
    pub providers: Vec<String>,
    /// Admitted patient care episodes across all trusts; the other tables scale with it.
    pub rows: u64,
    pub seed: u64,
}

/// One file written.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedTable {
    pub table: String,
    pub path: PathBuf,
    pub rows: u64,
}

/// One trust's generated data.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedTrust {
    pub provider: String,
    pub dir: PathBuf,
    pub tables: Vec<GeneratedTable>,
}

/// A generation run failed.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: cannot write Parquet: {message}")]
    Parquet { path: PathBuf, message: String },
    #[error("cannot build a batch: {0}")]
    Arrow(String),
}

impl GenError {
    fn io(path: &Path, e: std::io::Error) -> GenError {
        GenError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
    fn parquet(path: &Path, e: parquet::errors::ParquetError) -> GenError {
        GenError::Parquet {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// Checks the request against the provider domain before anything is written.
fn check(config: &GenConfig, catalog: &Catalog) -> Result<(), GenError> {
    let domain = catalog
        .domain("ods_provider")
        .ok_or_else(|| GenError::Invalid("the ods_provider domain is missing".into()))?;
    if config.providers.is_empty() {
        return Err(GenError::Invalid(
            "--providers: name at least one ODS provider code, e.g. RRK,RTH,RJ1".into(),
        ));
    }
    for (i, p) in config.providers.iter().enumerate() {
        if !domain.contains(p) {
            let known = domain.codes().collect::<Vec<_>>().join(", ");
            return Err(GenError::Invalid(format!(
                "--providers: `{p}` is not an ODS provider code in the contract (known: {known})"
            )));
        }
        if config.providers[..i].contains(p) {
            return Err(GenError::Invalid(format!("--providers: `{p}` is listed twice")));
        }
    }
    if config.rows < config.providers.len() as u64 {
        return Err(GenError::Invalid(format!(
            "--rows must be at least the number of providers ({})",
            config.providers.len()
        )));
    }
    Ok(())
}

/// National unit costs by (specialty, patient class), read from the public reference table.
fn unit_costs(catalog: &Catalog) -> HashMap<(String, String), f64> {
    catalog
        .public_data("ref_unit_costs")
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut parts = line.split(',');
            let spec = parts.next()?.to_string();
            let class = parts.next()?.to_string();
            let cost = parts.next()?.trim().parse().ok()?;
            Some(((spec, class), cost))
        })
        .collect()
}

/// Generates every trust's data; trusts are written in parallel, each deterministically.
pub fn generate(config: &GenConfig, catalog: &Catalog) -> Result<Vec<GeneratedTrust>, GenError> {
    check(config, catalog)?;
    let profiles = config
        .providers
        .iter()
        .map(|p| TrustProfile::new(p, config.seed, clinical::SPECIALTIES.len()))
        .collect::<Vec<_>>();
    let total_size: f64 = profiles.iter().map(|p| p.size).sum();
    let mut shares = profiles
        .iter()
        .map(|p| ((config.rows as f64) * p.size / total_size).floor() as u64)
        .collect::<Vec<_>>();
    let assigned: u64 = shares.iter().sum();
    shares[0] += config.rows - assigned;
    let costs = unit_costs(catalog);
    let plans = plan_populations(&shares, config.rows);
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);

    let mut results: Vec<Option<Result<GeneratedTrust, GenError>>> = (0..profiles.len()).map(|_| None).collect();
    for chunk in (0..profiles.len()).collect::<Vec<_>>().chunks(workers) {
        std::thread::scope(|scope| {
            let handles = chunk
                .iter()
                .map(|&i| {
                    let (profile, rows, plan, costs) = (&profiles[i], shares[i], plans[i], &costs);
                    (
                        i,
                        scope.spawn(move || generate_trust(config, catalog, profile, rows, plan, costs)),
                    )
                })
                .collect::<Vec<_>>();
            for (i, h) in handles {
                results[i] = Some(
                    h.join()
                        .unwrap_or_else(|_| Err(GenError::Invalid("a generator thread panicked".into()))),
                );
            }
        });
    }
    results.into_iter().map(|r| r.expect("every trust ran")).collect()
}

/// (first person number, local pool size, shared pool size) per trust.
fn plan_populations(shares: &[u64], total: u64) -> Vec<(u64, u64, u64)> {
    let mut start = 0;
    shares
        .iter()
        .map(|rows| {
            let size = (rows * 10 / 22).max(1);
            let plan = (start, size, (total / 20).max(1));
            start += size;
            plan
        })
        .collect()
}

fn generate_trust(
    config: &GenConfig,
    catalog: &Catalog,
    profile: &TrustProfile,
    apc_rows: u64,
    (person_start, local, shared): (u64, u64, u64),
    costs: &HashMap<(String, String), f64>,
) -> Result<GeneratedTrust, GenError> {
    let dir = config.out.join(&profile.code);
    std::fs::create_dir_all(&dir).map_err(|e| GenError::io(&dir, e))?;
    let calendar = rng::Calendar::standard();
    let people = people::Population::new(config.seed, person_start, local, shared);
    let schema = |t: &str| {
        catalog
            .contract(t)
            .map(|c| c.arrow_schema())
            .map_err(|e| GenError::Invalid(e.to_string()))
    };
    let path = |t: &str| dir.join(format!("{t}.parquet"));
    let label = |t: &str| format!("{}/{t}", profile.code);

    let mut apc_sink = writer::ParquetSink::create(&path("apc_episodes"), schema("apc_episodes")?)?;
    let mut ec_sink = writer::ParquetSink::create(&path("ec_attendances"), schema("ec_attendances")?)?;
    let apc = apc::ApcGenerator::new(profile, &people, &calendar, costs);
    let ec = ec::EcGenerator::new(profile, &people, &calendar);
    let mut apc_rng = rng::stream(config.seed, &label("apc_episodes"));
    let mut ec_rng = rng::stream(config.seed, &label("ec_attendances"));
    let mut left = apc_rows;
    while left > 0 {
        let n = left.min(writer::BATCH_ROWS as u64) as usize;
        let (columns, admitted) = apc.batch(&mut apc_rng, n);
        apc_sink.write(columns)?;
        ec_sink.write(ec.batch(&mut ec_rng, &admitted))?;
        left -= n as u64;
    }
    let apc_written = apc_sink.finish()?;
    let ec_written = ec_sink.finish()?;

    let mut op_sink = writer::ParquetSink::create(&path("op_appointments"), schema("op_appointments")?)?;
    let op = op::OpGenerator::new(profile, &people, &calendar);
    let mut op_rng = rng::stream(config.seed, &label("op_appointments"));
    let mut left = (apc_rows as f64 * op::APPOINTMENTS_PER_EPISODE).round() as u64;
    while left > 0 {
        let n = left.min(writer::BATCH_ROWS as u64) as usize;
        op_sink.write(op.batch(&mut op_rng, n))?;
        left -= n as u64;
    }
    let op_written = op_sink.finish()?;

    let mut wf_sink =
        writer::ParquetSink::create(&path("workforce_finance_monthly"), schema("workforce_finance_monthly")?)?;
    let mut wf_rng = rng::stream(config.seed, &label("workforce_finance_monthly"));
    wf_sink.write(workforce::generate(profile, &calendar, apc_rows, &mut wf_rng))?;
    let wf_written = wf_sink.finish()?;

    let table = |t: &str, rows| GeneratedTable {
        table: t.to_string(),
        path: path(t),
        rows,
    };
    Ok(GeneratedTrust {
        provider: profile.code.clone(),
        dir: dir.clone(),
        tables: vec![
            table("apc_episodes", apc_written),
            table("ec_attendances", ec_written),
            table("op_appointments", op_written),
            table("workforce_finance_monthly", wf_written),
        ],
    })
}
