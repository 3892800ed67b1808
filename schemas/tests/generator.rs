//! The synthetic data generator: determinism, conformance to the contracts, and realism.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Date32Type, Int32Type, TimestampMicrosecondType};
use chrono::{Datelike, NaiveDate};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tessera_schemas::gen::{generate, GenConfig};
use tessera_schemas::Catalog;

fn config(out: &Path, providers: &[&str], rows: u64, seed: u64) -> GenConfig {
    GenConfig {
        out: out.to_path_buf(),
        providers: providers.iter().map(|p| p.to_string()).collect(),
        rows,
        seed,
    }
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// A column of every batch as strings (NULL as "∅").
fn strings(batches: &[RecordBatch], column: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let array = cast(b.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
            let array = array.as_string::<i32>().clone();
            (0..array.len())
                .map(move |i| {
                    if array.is_null(i) {
                        "∅".to_string()
                    } else {
                        array.value(i).to_string()
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ints(batches: &[RecordBatch], column: &str) -> Vec<i32> {
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .unwrap()
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn dates(batches: &[RecordBatch], column: &str) -> Vec<NaiveDate> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .unwrap()
                .as_primitive::<Date32Type>()
                .values()
                .to_vec()
        })
        .map(|d| epoch + chrono::Days::new(d as u64))
        .collect()
}

#[test]
fn same_seed_gives_byte_identical_files_and_another_seed_does_not() {
    let catalog = Catalog::builtin();
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    let first = generate(&config(a.path(), &["RRK", "RTH", "RJ1"], 170_000, 7), &catalog).unwrap();
    generate(&config(b.path(), &["RRK", "RTH", "RJ1"], 170_000, 7), &catalog).unwrap();
    generate(&config(c.path(), &["RRK", "RTH", "RJ1"], 170_000, 8), &catalog).unwrap();
    let mut compared = 0;
    for trust in &first {
        for table in &trust.tables {
            let relative = table.path.strip_prefix(a.path()).unwrap();
            let bytes_a = std::fs::read(&table.path).unwrap();
            assert_eq!(
                bytes_a,
                std::fs::read(b.path().join(relative)).unwrap(),
                "{} differs between runs",
                relative.display()
            );
            if table.table != "workforce_finance_monthly" || trust.provider != "RRK" {
                assert_ne!(
                    bytes_a,
                    std::fs::read(c.path().join(relative)).unwrap(),
                    "{} ignores the seed",
                    relative.display()
                );
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 12);
    // 150,000 episodes are shared by trust size; more than one batch per trust is written.
    let apc: u64 = first.iter().map(|t| t.tables[0].rows).sum();
    assert_eq!(apc, 170_000);
    assert!(first[0].tables[0].rows > 65_536);
}

#[test]
fn unknown_or_repeated_provider_is_refused_before_writing() {
    let catalog = Catalog::builtin();
    let dir = tempfile::tempdir().unwrap();
    let err = generate(&config(dir.path(), &["RRK", "XYZ"], 100, 1), &catalog).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("--providers: `XYZ` is not an ODS provider code in the contract (known: RRK, RTH, RJ1,"),
        "{err}"
    );
    let err = generate(&config(dir.path(), &["RRK", "RRK"], 100, 1), &catalog).unwrap_err();
    assert_eq!(err.to_string(), "--providers: `RRK` is listed twice");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

struct Trust {
    apc: Vec<RecordBatch>,
    ec: Vec<RecordBatch>,
    op: Vec<RecordBatch>,
    wf: Vec<RecordBatch>,
}

fn sample() -> (tempfile::TempDir, HashMap<String, Trust>) {
    let dir = tempfile::tempdir().unwrap();
    let trusts = generate(&config(dir.path(), &["RRK", "RTH"], 120_000, 11), &Catalog::builtin()).unwrap();
    let data = trusts
        .iter()
        .map(|t| {
            let get = |name: &str| read(&t.dir.join(format!("{name}.parquet")));
            (
                t.provider.clone(),
                Trust {
                    apc: get("apc_episodes"),
                    ec: get("ec_attendances"),
                    op: get("op_appointments"),
                    wf: get("workforce_finance_monthly"),
                },
            )
        })
        .collect();
    (dir, data)
}

#[test]
fn generated_data_conforms_to_the_contracts_and_looks_like_nhs_activity() {
    let catalog = Catalog::builtin();
    let (_dir, trusts) = sample();
    for (provider, t) in &trusts {
        // Every dimension value is in its public domain; the Parquet schema is the contract's.
        for (table, batches) in [
            ("apc_episodes", &t.apc),
            ("ec_attendances", &t.ec),
            ("op_appointments", &t.op),
            ("workforce_finance_monthly", &t.wf),
        ] {
            let contract = catalog.contract(table).unwrap();
            assert_eq!(batches[0].schema().fields().len(), contract.columns.len());
            for column in contract.columns.iter().filter(|c| c.domain.is_some()) {
                let domain = catalog.column_domain(column).unwrap();
                for value in strings(batches, &column.name) {
                    assert!(
                        domain.contains(&value) || (value == "∅" && column.nullable),
                        "{provider}.{table}.{}: `{value}` is not in domain {}",
                        column.name,
                        column.domain.as_deref().unwrap()
                    );
                }
            }
        }
        let methods = strings(&t.apc, "admission_method");
        let emergency = methods.iter().filter(|m| m.starts_with('2')).count() as f64 / methods.len() as f64;
        assert!(
            (0.33..0.5).contains(&emergency),
            "{provider}: emergency share {emergency}"
        );

        // Day cases: nearly all elective cataract surgery, few elective orthopaedic admissions.
        let specialty = strings(&t.apc, "treatment_specialty");
        let class = strings(&t.apc, "patient_class");
        let day_case_share = |code: &str| {
            let electives = (0..methods.len())
                .filter(|&i| methods[i].starts_with('1') && specialty[i] == code)
                .collect::<Vec<_>>();
            electives.iter().filter(|&&i| class[i] == "2").count() as f64 / electives.len() as f64
        };
        assert!(
            day_case_share("130") > 0.85,
            "{provider}: ophthalmology day cases {}",
            day_case_share("130")
        );
        assert!(
            day_case_share("110") < 0.45,
            "{provider}: orthopaedic day cases {}",
            day_case_share("110")
        );

        // Length of stay: zero for day cases, right-skewed, longer for the oldest.
        let los = ints(&t.apc, "los_days");
        let age = strings(&t.apc, "age_band");
        assert!((0..los.len()).filter(|&i| class[i] == "2").all(|i| los[i] == 0));
        let mut ordinary = (0..los.len())
            .filter(|&i| class[i] == "1")
            .map(|i| los[i])
            .collect::<Vec<_>>();
        ordinary.sort();
        let mean = ordinary.iter().map(|&x| f64::from(x)).sum::<f64>() / ordinary.len() as f64;
        assert!(
            mean > 1.3 * f64::from(ordinary[ordinary.len() / 2]),
            "{provider}: LOS not right-skewed"
        );
        let mean_for = |band: &str| {
            let v = (0..los.len())
                .filter(|&i| class[i] == "1" && age[i] == band)
                .map(|i| f64::from(los[i]))
                .collect::<Vec<_>>();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(
            mean_for("80+") > 1.4 * mean_for("30-44"),
            "{provider}: age does not lengthen stays"
        );

        // Discharge follows admission by the length of stay.
        let admitted = dates(&t.apc, "admission_date");
        let discharged = dates(&t.apc, "discharge_date");
        assert!((0..los.len()).all(|i| (discharged[i] - admitted[i]).num_days() == i64::from(los[i])));

        // Electives happen on weekdays; emergencies peak in winter.
        let weekend_electives = (0..methods.len())
            .filter(|&i| methods[i].starts_with('1') && admitted[i].weekday().num_days_from_monday() >= 5)
            .count() as f64;
        let electives = methods.iter().filter(|m| m.starts_with('1')).count() as f64;
        assert!(
            weekend_electives / electives < 0.05,
            "{provider}: weekend electives {}",
            weekend_electives / electives
        );
        let emergencies_in = |month: u32| {
            (0..methods.len())
                .filter(|&i| methods[i].starts_with('2') && admitted[i].month() == month)
                .count() as f64
        };
        assert!(
            emergencies_in(1) > 1.15 * emergencies_in(7),
            "{provider}: no winter pressure"
        );

        // A&E: the four-hour cliff, and one attendance for every admission via A&E.
        let minutes = ints(&t.ec, "minutes_in_department");
        let dept = strings(&t.ec, "department_type");
        let in_range = |lo: i32, hi: i32| {
            (0..minutes.len())
                .filter(|&i| dept[i] == "01" && (lo..=hi).contains(&minutes[i]))
                .count()
        };
        assert!(
            in_range(230, 239) > 3 * in_range(241, 250),
            "{provider}: no 4-hour cliff ({} vs {})",
            in_range(230, 239),
            in_range(241, 250)
        );
        let disposal = strings(&t.ec, "disposal");
        assert_eq!(
            disposal.iter().filter(|d| *d == "admitted").count(),
            methods.iter().filter(|m| *m == "21").count(),
            "{provider}: A&E admissions do not match APC method 21"
        );
        let arrivals =
            t.ec.iter()
                .flat_map(|b| {
                    b.column_by_name("arrival_time")
                        .unwrap()
                        .as_primitive::<TimestampMicrosecondType>()
                        .values()
                        .to_vec()
                })
                .collect::<Vec<_>>();
        assert!(
            arrivals
                .iter()
                .all(|&us| (1_680_307_200_000_000..1_743_465_600_000_000).contains(&us)),
            "{provider}: arrivals outside April 2023 - March 2025"
        );

        // Outpatients: DNA rates rise with deprivation is checked across trusts below; values are sane here.
        let outcomes = strings(&t.op, "attended");
        let dna = outcomes.iter().filter(|o| *o == "did_not_attend").count() as f64 / outcomes.len() as f64;
        assert!((0.03..0.15).contains(&dna), "{provider}: DNA rate {dna}");
        assert_eq!(t.wf.iter().map(|b| b.num_rows()).sum::<usize>(), 24 * 6);
    }
    // Trusts differ: RRK (more deprived, busier A&E) misses more appointments than RTH.
    let dna = |p: &str| {
        let o = strings(&trusts[p].op, "attended");
        o.iter().filter(|x| *x == "did_not_attend").count() as f64 / o.len() as f64
    };
    assert!(
        dna("RRK") > dna("RTH") * 1.2,
        "DNA RRK {} vs RTH {}",
        dna("RRK"),
        dna("RTH")
    );
    // Staffing follows activity: FTE per episode is within 20% between trusts.
    let fte_per_episode = |p: &str| {
        let t = &trusts[p];
        let fte: f64 =
            t.wf.iter()
                .flat_map(|b| {
                    b.column_by_name("fte")
                        .unwrap()
                        .as_primitive::<arrow::datatypes::Float64Type>()
                        .values()
                        .to_vec()
                })
                .sum();
        fte / t.apc.iter().map(|b| b.num_rows()).sum::<usize>() as f64
    };
    let ratio = fte_per_episode("RRK") / fte_per_episode("RTH");
    assert!((0.8..1.25).contains(&ratio), "FTE per episode ratio {ratio}");
}
