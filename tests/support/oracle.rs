//! An oracle that reads the generated Parquet files directly (no DataFusion, no SQL) to compute
//! expected answers.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Float64Type, Int32Type, Int8Type, TimestampMicrosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_schemas::Catalog;

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
