//! The coordinator against live nodes: federated answers equal single-node DataFusion on the union.

use tessera_support::{compare, rows_of, Federation};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let fed = Federation::start(&["RRK", "RTH", "RJ1"], 3_000, 5).await;
    for sql in [
        "SELECT count(*) FROM apc_episodes",
        "SELECT provider_code, treatment_specialty, count(*) AS spells, avg(los_days) AS mean_los, stddev(los_days) AS sd_los \
         FROM apc_episodes WHERE admission_method LIKE '2%' AND admission_date >= DATE '2024-04-01' \
         GROUP BY 1, 2 HAVING count(*) >= 10 ORDER BY mean_los DESC, 1, 2 LIMIT 20",
    ] {
        println!("{}", fed.coordinator.explain(sql).await.unwrap());
        let result = fed.coordinator.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let expected = fed.reference(sql).await.unwrap();
        println!("{}", result.provenance.summary());
        compare(&rows_of(&result.batches), &rows_of(&expected), true).unwrap_or_else(|d| panic!("{sql}\n{d}"));
    }
}
