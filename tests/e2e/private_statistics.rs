//! What a differentially private federation computes: with a spend large enough that the
//! noise is small, every statistic converges to the exact answer on the union (so the
//! clamping, the bounding and the centre's arithmetic are right), and every question of the
//! demo's tour is answered at the default spend.

use std::collections::BTreeMap;

use tessera_support::{rows_of, Cell, Federation};

use crate::tour;

const TRUSTS: [&str; 3] = ["RRK", "RTH", "RJ1"];

/// A federation whose questions spend ρ = 150 each with up to 50 records a person: noise of a
/// count has σ ≈ 3, and bounding drops next to nothing.
async fn nearly_exact() -> Federation {
    Federation::start_private(&TRUSTS, 6_000, 5, |_, p| {
        p.records_per_person = 50;
        p.project_budget = 1000.0;
        p.question_spend = 150.0;
        p.max_question_spend = 150.0;
    })
    .await
}

/// As [`nearly_exact`], with each person's records bounded by `records`.
async fn small_noise_with_cap(records: u64) -> Federation {
    Federation::start_private(&TRUSTS, 6_000, 5, |_, p| {
        p.records_per_person = records;
        p.project_budget = 1000.0;
        p.question_spend = 150.0;
        p.max_question_spend = 150.0;
    })
    .await
}

fn number(cell: &Cell) -> f64 {
    match cell {
        Cell::Int(i) => *i as f64,
        Cell::Float(f) => *f,
        Cell::Null => f64::NAN,
        other => panic!("not a number: {other:?}"),
    }
}

/// Each row's last column by the text of the others.
fn by_key(batches: &[datafusion::arrow::array::RecordBatch]) -> BTreeMap<String, f64> {
    rows_of(batches)
        .iter()
        .map(|row| {
            let key = row[..row.len() - 1]
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join("|");
            (key, number(row.last().unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_statistics_converge_to_the_exact_answer() {
    let f = nearly_exact().await;
    const JOINED: &str = "FROM apc_episodes a JOIN ref_unit_costs r \
        ON a.treatment_specialty = r.treatment_specialty AND a.patient_class = r.patient_class GROUP BY 1";
    // (what, question, the exact question on the union when it is another, largest relative
    // error, and absolute error beyond it: 5σ of a small count, where σ = 3)
    let cases = [
        (
            "a count of an indicator",
            "SELECT provider_code, sum(CASE WHEN attended = 'did_not_attend' THEN 1 ELSE 0 END) AS dna FROM op_appointments GROUP BY 1".to_string(),
            Some("SELECT provider_code, count(*) FILTER (WHERE attended = 'did_not_attend') AS dna FROM op_appointments GROUP BY 1"),
            0.05,
            15.0,
        ),
        (
            "a mean of an indicator",
            "SELECT provider_code, avg(CASE WHEN patient_class = '2' THEN 1.0 ELSE 0.0 END) AS day_case FROM apc_episodes GROUP BY 1".to_string(),
            None,
            0.05,
            0.0,
        ),
        (
            "a mean clamped by the researcher",
            "SELECT sex, avg(least(los_days, 30)) AS los FROM apc_episodes GROUP BY 1".to_string(),
            None,
            0.05,
            0.0,
        ),
        (
            "a standard deviation from noisy sums of squares",
            "SELECT sex, stddev(least(los_days, 30)) AS sd FROM apc_episodes GROUP BY 1".to_string(),
            None,
            0.15,
            0.0,
        ),
        (
            "a population variance",
            "SELECT sex, var_pop(least(los_days, 30)) AS v FROM apc_episodes GROUP BY 1".to_string(),
            None,
            0.3,
            0.0,
        ),
        (
            "records through a join with a public reference table",
            format!("SELECT a.provider_code, count(r.unit_cost_gbp) AS n {JOINED}"),
            None,
            0.05,
            0.0,
        ),
        (
            // σ = 50 records × £10,000 (the public table's bound) / √(2ρ) ≈ £29,000 a trust,
            // beside a cost of a few million.
            "a cost through a join with a public reference table",
            format!("SELECT a.provider_code, sum(r.unit_cost_gbp) AS cost {JOINED}"),
            None,
            0.1,
            0.0,
        ),
    ];
    for (what, sql, reference, tolerance, slack) in cases {
        let reference = reference.unwrap_or(&sql);
        let result = f
            .coordinator
            .query(&sql)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let released = by_key(&result.batches);
        let truth = by_key(&f.reference(reference).await.unwrap());
        assert_eq!(
            released.keys().collect::<Vec<_>>(),
            truth.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (key, exact) in &truth {
            let value = released[key];
            assert!(
                (value - exact).abs() <= tolerance * exact.abs() + slack,
                "{what}: {key} released {value}, truth {exact}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_person_cannot_be_multiplied_by_a_join() {
    let f = nearly_exact().await;
    let cases = [
        "SELECT count(*) FROM apc_episodes a JOIN apc_episodes b ON a.person_id = b.person_id AND a.provider_code = b.provider_code",
        "SELECT count(*) FROM apc_episodes a JOIN apc_episodes b ON a.age_band = b.age_band AND a.provider_code = b.provider_code",
        "SELECT count(*) FROM apc_episodes a JOIN ec_attendances e ON a.person_id = e.person_id AND a.provider_code = e.provider_code",
    ];
    for sql in cases {
        let message = match f.coordinator.query(sql).await {
            Ok(r) => panic!("{sql} was answered with {} rows", r.num_rows()),
            Err(e) => e.message,
        };
        assert!(
            message.contains("reads one table of people, once")
                || message.contains("cannot be joined record by record"),
            "{sql}: {message}"
        );
    }
}

/// Each person's records are bounded among the rows the question reads, after its
/// conditions: with one record a person, a count of emergency admissions is the number of
/// people admitted as emergencies (someone whose first episode was elective still counts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounding_happens_after_the_question_s_conditions() {
    let f = small_noise_with_cap(1).await;
    let condition = "FROM apc_episodes WHERE admission_method LIKE '2%' GROUP BY 1";
    let released = by_key(
        &f.coordinator
            .query(&format!("SELECT provider_code, count(*) AS n {condition}"))
            .await
            .unwrap()
            .batches,
    );
    let people = by_key(
        &f.reference(&format!(
            "SELECT provider_code, count(DISTINCT person_id) AS n {condition}"
        ))
        .await
        .unwrap(),
    );
    let records = by_key(
        &f.reference(&format!("SELECT provider_code, count(*) AS n {condition}"))
            .await
            .unwrap(),
    );
    assert_ne!(
        people, records,
        "some people must have several such episodes for this test to mean anything"
    );
    // σ² is a whole number, at least 1: the noise is within ±5 but for 1 in 1.7 million.
    for (trust, exact) in &people {
        let value = released[trust];
        assert!(
            (value - exact).abs() <= 5.0,
            "{trust}: released {value}, people {exact}"
        );
    }
}

/// Over cells, a person's records are bounded in L2 norm, as the noise is calibrated: with
/// k = 3 a person keeps all their records while Σ c² ≤ 9 over the months (one a month in nine
/// months), and at least 3 otherwise. Counting records instead (at most 3 a person) keeps far
/// fewer, below what this allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_s_records_spread_over_cells_are_bounded_in_l2_norm() {
    let f = small_noise_with_cap(3).await;
    let released = f
        .coordinator
        .query(
            "SELECT provider_code, date_trunc('month', admission_date) AS month, count(*) AS n \
             FROM apc_episodes GROUP BY 1, 2",
        )
        .await
        .unwrap();
    let cells = released.num_rows() as f64;
    let total: f64 = by_key(&released.batches).values().sum();
    let bounds = f
        .reference(
            "WITH c AS (SELECT provider_code, person_id, date_trunc('month', admission_date) AS m, count(*) AS c \
               FROM apc_episodes GROUP BY 1, 2, 3), \
             p AS (SELECT provider_code, person_id, sum(c) AS n, sum(c * c) AS s2 FROM c GROUP BY 1, 2) \
             SELECT CAST(sum(CASE WHEN s2 <= 9 THEN n ELSE least(n, 3) END) AS DOUBLE), \
                    CAST(sum(CASE WHEN s2 <= 9 THEN n ELSE least(n, 9) END) AS DOUBLE), \
                    CAST(sum(least(n, 3)) AS DOUBLE) FROM p",
        )
        .await
        .unwrap();
    let row = &rows_of(&bounds)[0];
    let (low, high, counted) = (number(&row[0]), number(&row[1]), number(&row[2]));
    // Each cell's noise has σ ≈ 1 at this spend: the total's is about √cells.
    let margin = 6.0 * cells.sqrt();
    assert!(
        low - counted > 2.0 * margin,
        "the data must hold people spread over months for this test to mean anything: {low} vs {counted}"
    );
    assert!(
        (low - margin..=high + margin).contains(&total),
        "released {total} records over {cells} cells; the L2 bound keeps {low} to {high} (a count cap {counted})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_question_of_the_tour_is_answered_at_the_default_spend() {
    let f = Federation::start_private(&TRUSTS, 6_000, 5, |_, p| p.project_budget = 100.0).await;
    for (title, sql) in tour::questions(true) {
        let result = f
            .coordinator
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{title}: {e}"));
        assert!(result.num_rows() > 0, "{title}: no rows");
    }
}

/// Expressions a researcher could use to make a question fail, or a sum go NaN, exactly when
/// one record holds some value: each is refused for every record alike, or answered for every
/// record alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statistic_fails_or_goes_nan_on_one_record_s_value() {
    let f = Federation::start_private(&TRUSTS, 3_000, 5, |_, p| p.project_budget = 100.0).await;
    let target = "admission_method LIKE '2%' AND sex = 'F'";
    // (what, question, Some(refusal) or None for an answer)
    let cases = [
        (
            "rounding to a record's own number of places (10^309 is NaN)",
            format!("SELECT sum(CASE WHEN {target} THEN round(1.0, los_days) ELSE 1.0 END) AS n FROM apc_episodes"),
            Some("could fail on a record"),
        ),
        (
            "abs of the smallest tiny integer overflows",
            format!(
                "SELECT count(CASE WHEN {target} THEN abs(TRY_CAST(CAST(los_days AS DOUBLE) - 170.0 AS TINYINT)) END) AS n FROM apc_episodes"
            ),
            Some("could fail on a record"),
        ),
        (
            "rounding an integer to tens overflows near its largest value",
            format!("SELECT count(CASE WHEN {target} THEN round(TRY_CAST(los_days AS TINYINT), -1) END) AS n FROM apc_episodes"),
            Some("could fail on a record"),
        ),
        (
            "a sum cast back to a narrow type its first branch has",
            format!("SELECT sum(CASE WHEN NOT ({target}) THEN TRY_CAST(0 AS TINYINT) ELSE los_days * 3 END) AS n FROM apc_episodes"),
            None,
        ),
    ];
    for (what, sql, refusal) in cases {
        match (f.coordinator.query(&sql).await, refusal) {
            (Ok(result), None) => {
                let value = rows_of(&result.batches)[0][0].clone();
                assert!(matches!(value, Cell::Int(_) | Cell::Float(_)), "{what}: {value:?}");
            }
            (Err(e), Some(reason)) => assert!(e.message.contains(reason), "{what}: {}", e.message),
            (Ok(_), Some(_)) => panic!("{what}: answered"),
            (Err(e), None) => panic!("{what}: {}", e.message),
        }
    }
}
