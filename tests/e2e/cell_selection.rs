//! A question whose public grid is too large to release whole (more than a trust's
//! `max_cells`): each trust releases only the cells whose noisy count of records reaches a
//! threshold far above what one person's records can make (τ-thresholding), paid from the
//! question's spend. The attacker's aim is a cell of one person, or a handful: it must not
//! appear, while large cells still do.

use std::collections::BTreeMap;

use tessera_privacy::selection::{threshold, SELECTION_DELTA};
use tessera_support::{rows_of, Cell, Federation};

const TRUSTS: [&str; 2] = ["RRK", "RTH"];

/// Each trust's cells of `batches` (provider, age band, admission method) → count.
fn cells(batches: &[datafusion::arrow::array::RecordBatch]) -> BTreeMap<(String, String, String), i64> {
    rows_of(batches)
        .into_iter()
        .map(|row| match row.as_slice() {
            [Cell::Str(trust), age, method, Cell::Int(n)] => {
                let text = |c: &Cell| match c {
                    Cell::Str(s) => s.clone(),
                    _ => "NULL".into(),
                };
                ((trust.clone(), text(age), text(method)), *n)
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_too_large_to_release_whole_releases_only_cells_far_above_one_persons_records() {
    let f = Federation::start_private(&TRUSTS, 20_000, 3, |_, p| {
        p.max_cells = 10;
        p.project_budget = 100.0;
    })
    .await;
    let sql = "SELECT provider_code, age_band, admission_method, count(*) AS n FROM apc_episodes GROUP BY provider_code, age_band, admission_method";
    let exact = cells(&f.reference(sql).await.unwrap());
    let small = exact.values().filter(|&&n| n <= 40).count();
    assert!(
        small > 0,
        "the data must have small cells for this test to mean anything: {exact:?}"
    );

    // One count and the selection count share the default ρ = 0.05: each σ = 10 / √(2 × 0.025).
    let sd = 10.0 / (2.0f64 * 0.025).sqrt();
    let tau = threshold(10, sd, SELECTION_DELTA) as i64;
    let result = f.coordinator.query(sql).await.unwrap();
    let released = cells(&result.batches);
    for (cell, n) in &exact {
        match released.get(cell) {
            // A released cell's noisy count passed τ: its records are far more than ten people's
            // cap of ten each could hide among (six standard deviations below τ).
            Some(noisy) => {
                assert!(
                    *n as f64 >= tau as f64 - 6.0 * sd,
                    "{cell:?}: {n} records released as {noisy}"
                );
                assert!(
                    (*noisy - n).abs() as f64 <= 6.0 * sd * 1.01,
                    "{cell:?}: {noisy} for {n}"
                );
            }
            None => assert!((*n as f64) < tau as f64 + 6.0 * sd, "{cell:?}: {n} records withheld"),
        }
    }
    assert!(!released.is_empty(), "large cells are released: {exact:?}");
    assert!(released.len() < exact.len(), "small cells are not: {released:?}");
    // Cells no record falls in cannot pass: only cells that hold records are candidates.
    assert!(released.keys().all(|cell| exact.contains_key(cell)));
    // The footer says how the cells were chosen, and that the selection is paid for: the
    // question cost its spend at each trust.
    let provenance = result.provenance.summary();
    assert!(
        provenance.contains(&format!("RRK {tau}, RTH {tau}; δ 1e-9 more")),
        "{provenance}"
    );
    assert!(provenance.contains("RRK ρ = 0.05 "), "{provenance}");
}

/// A group key may come from a public reference table joined on its whole key: its values are
/// the domain's, listed from the contracts like any other key's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_from_a_public_table_has_the_public_grid() {
    let f = Federation::start_private(&TRUSTS, 3_000, 3, |_, p| p.project_budget = 100.0).await;
    let sql = "SELECT r.patient_class, count(*) AS n FROM apc_episodes a JOIN ref_unit_costs r \
               ON a.treatment_specialty = r.treatment_specialty AND a.patient_class = r.patient_class \
               GROUP BY r.patient_class";
    let count = |batches: &[datafusion::arrow::array::RecordBatch]| {
        rows_of(batches)
            .into_iter()
            .map(|row| match row.as_slice() {
                [Cell::Str(class), Cell::Int(n)] => (class.clone(), *n),
                other => panic!("{other:?}"),
            })
            .collect::<BTreeMap<_, _>>()
    };
    let released = count(&f.coordinator.query(sql).await.unwrap().batches);
    let exact = count(&f.reference(sql).await.unwrap());
    let domain = tessera_schemas::Catalog::builtin()
        .domain("patient_class")
        .unwrap()
        .codes()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(released.keys().cloned().collect::<Vec<_>>(), domain);
    // Two trusts' noise, σ² = 1001 each: within six standard deviations.
    let margin = 6.0 * (2.0f64 * 1001.0).sqrt();
    for (class, n) in &released {
        let truth = exact.get(class).copied().unwrap_or(0);
        assert!(((n - truth) as f64).abs() <= margin, "{class}: {n} for {truth}");
    }
}

/// A selected cell's keys are public values, as a grid's are: months outside the trusts' public
/// period are not released even when many records fall in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_cells_have_only_public_key_values() {
    let f = Federation::start_private(&TRUSTS, 20_000, 3, |_, p| {
        p.max_cells = 1;
        p.project_budget = 100.0;
        p.period = ["2024-01".into(), "2024-02".into()];
    })
    .await;
    let sql =
        "SELECT CAST(date_trunc('month', admission_date) AS DATE) AS month, count(*) AS n FROM apc_episodes GROUP BY 1";
    let months = |batches: &[datafusion::arrow::array::RecordBatch]| {
        rows_of(batches)
            .into_iter()
            .map(|row| match &row[0] {
                Cell::Str(month) => month.clone(),
                other => panic!("{other:?}"),
            })
            .collect::<Vec<_>>()
    };
    let exact = months(&f.reference(sql).await.unwrap());
    assert!(
        exact.len() > 2,
        "the data must have months outside the period: {exact:?}"
    );
    let released = months(&f.coordinator.query(sql).await.unwrap().batches);
    assert!(!released.is_empty(), "the period's months hold many records");
    for month in &released {
        assert!(
            month.starts_with("2024-01") || month.starts_with("2024-02"),
            "{month} released: {released:?}"
        );
    }
}
