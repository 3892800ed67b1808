//! What a private answer says about its own noise: each released value's merged standard
//! deviation and sensitivity (Arrow field metadata and the footer), from what each trust stated.

use tessera_protocol::names::{NOISE_METADATA, NOISE_SD_METADATA, SENSITIVITY_METADATA};
use tessera_support::Federation;

const TRUSTS: [&str; 3] = ["RRK", "RTH", "RJ1"];

/// Each trust's σ² for one count at the default spend, its only statistic: ⌈10² / (2 × 0.05)⌉,
/// nudged up once (each person's records capped at 10).
const ONE_COUNT_VARIANCE: f64 = 1001.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_released_value_states_its_merged_noise() {
    let f = Federation::start_private(&TRUSTS, 3_000, 5, |_, p| p.project_budget = 100.0).await;
    let cases = [
        // Every trust adds its noise to every cell: the variances add up.
        (
            "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex",
            (3.0 * ONE_COUNT_VARIANCE).sqrt(),
            "n sd 54.8 (sensitivity 10)",
        ),
        // Each row is one trust's: it carries that trust's noise only.
        (
            "SELECT provider_code, count(*) AS n FROM apc_episodes GROUP BY provider_code",
            ONE_COUNT_VARIANCE.sqrt(),
            "n sd 31.6 (sensitivity 10) in each trust's row",
        ),
    ];
    for (sql, sd, footer) in cases {
        let result = f.coordinator.query(sql).await.unwrap();
        let field = result.schema.field_with_name("n").unwrap();
        let stated: f64 = field
            .metadata()
            .get(NOISE_SD_METADATA)
            .expect("merged sd")
            .parse()
            .unwrap();
        assert!((stated - sd).abs() < 1e-9, "{sql}: sd {stated}, expected {sd}");
        assert_eq!(
            field.metadata().get(SENSITIVITY_METADATA).map(String::as_str),
            Some("10"),
            "{sql}"
        );
        assert!(
            result.disclosure.contains(&format!("noise: {footer}")),
            "{sql}: {}",
            result.disclosure
        );
        // Only what the researcher can use is left: the plan's internal mark is gone.
        assert!(
            field.metadata().keys().all(|k| k != "tessera.noise_from"),
            "{sql}: {:?}",
            field.metadata()
        );
    }
    // A mean is computed from two noisy sums: their noise is stated, not one sd of its own.
    let result = f
        .coordinator
        .query("SELECT sex, avg(los_days) AS mean_los FROM apc_episodes GROUP BY sex")
        .await
        .unwrap();
    let field = result.schema.field_with_name("mean_los").unwrap();
    assert_eq!(field.metadata().get(NOISE_SD_METADATA), None);
    let words = field.metadata().get(NOISE_METADATA).expect("the noise in words");
    assert!(
        words.starts_with("from noisy ") && words.contains("sum(") && words.contains("count("),
        "{words}"
    );
    assert!(
        result.disclosure.contains(&format!("mean_los {words}")),
        "{}",
        result.disclosure
    );
}

/// An attacker compares what is stated for cells of very few records with cells of nearly all
/// of them: the noise is fixed by the question and the trusts' settings, never by the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stated_noise_tells_nothing_about_the_records() {
    let f = Federation::start_private(&TRUSTS, 3_000, 5, |_, p| p.project_budget = 100.0).await;
    let stated = |condition: &'static str| {
        let c = &f.coordinator;
        async move {
            let sql = format!("SELECT sex, count(*) FILTER (WHERE {condition}) AS n FROM apc_episodes GROUP BY sex");
            let result = c.query(&sql).await.unwrap();
            result.schema.field_with_name("n").unwrap().metadata().clone()
        }
    };
    let (few, most) = (stated("los_days > 180").await, stated("los_days <= 180").await);
    assert!(few.contains_key(NOISE_SD_METADATA), "{few:?}");
    assert_eq!(few, most);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_answer_states_no_noise() {
    let f = Federation::start(&TRUSTS, 3_000, 5).await;
    let result = f
        .coordinator
        .query("SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex")
        .await
        .unwrap();
    let field = result.schema.field_with_name("n").unwrap();
    assert!(
        field.metadata().keys().all(|k| !k.starts_with("tessera.noise")),
        "{:?}",
        field.metadata()
    );
    assert!(!result.disclosure.contains("noise:"), "{}", result.disclosure);
}
