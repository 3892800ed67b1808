//! What a private question costs at each trust, and that the answer says so: a statement of
//! several parts is one question under one cap, a trust that public facts leave no cell pays
//! nothing, and an answer of no rows still states its charge.

use tessera_privacy::{BudgetLedger, Rho};
use tessera_protocol::names::{NOISE_SD_METADATA, PROVENANCE_METADATA};
use tessera_support::Federation;

const TRUSTS: [&str; 3] = ["RRK", "RTH", "RJ1"];

fn spent(f: &Federation, trust: &str) -> Rho {
    BudgetLedger::open(f.data.trust_dir(trust).join("privacy-ledger.jsonl"))
        .unwrap()
        .account("exactness")
        .spent
}

/// One private trust with room in its budget.
async fn one_trust() -> Federation {
    Federation::start_private(&TRUSTS[..1], 2_000, 5, |_, p| p.project_budget = 100.0).await
}

/// A UNION of `parts` aggregates, each a fragment at every trust.
fn union_of(parts: usize) -> String {
    (0..parts)
        .map(|i| {
            format!(
                "SELECT {i} AS part, count(*) AS n FROM apc_episodes WHERE imd_decile = {}",
                i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_of_many_parts_spends_at_most_one_questions_cap() {
    let f = Federation::start_private(&TRUSTS, 3_000, 5, |_, p| p.project_budget = 100.0).await;
    // Five parts at ρ = 0.05 each are the cap of ρ = 0.25; six are more, refused before any
    // trust answers, and given back everywhere.
    let error = f.coordinator.query(&union_of(6)).await.unwrap_err();
    assert!(
        error
            .message
            .contains("a question may spend at most ρ = 0.25 at this trust in all its parts"),
        "{}",
        error.message
    );
    for trust in TRUSTS {
        assert_eq!(spent(&f, trust), Rho(0), "{trust}");
    }
    let result = f.coordinator.query(&union_of(5)).await.unwrap();
    assert_eq!(result.num_rows(), 5);
    for trust in TRUSTS {
        assert_eq!(spent(&f, trust), Rho(250_000), "{trust}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_whose_code_the_question_excludes_pays_nothing_and_adds_no_noise() {
    let f = Federation::start_private(&TRUSTS, 3_000, 5, |_, p| p.project_budget = 100.0).await;
    // (condition, the trusts it leaves any record to)
    let cases: [(&str, &[&str]); 3] = [
        ("provider_code = 'RRK'", &["RRK"]),
        ("provider_code <> 'RRK'", &["RTH", "RJ1"]),
        ("provider_code IN ('RTH', 'RJ1') AND sex = 'F'", &["RTH", "RJ1"]),
    ];
    let mut charged = std::collections::BTreeMap::new();
    for (condition, asked) in cases {
        let sql = format!("SELECT count(*) AS n FROM apc_episodes WHERE {condition}");
        let result = f.coordinator.query(&sql).await.unwrap();
        for trust in asked {
            *charged.entry(trust.to_string()).or_insert(0u64) += 50_000;
        }
        for trust in TRUSTS {
            let expected = charged.get(trust).copied().unwrap_or(0);
            assert_eq!(spent(&f, trust), Rho(expected), "{condition}: {trust}");
        }
        // Only the trusts that can hold such records add noise: 1001 is one count's σ² at ρ = 0.05.
        let sd: f64 = result.schema.field_with_name("n").unwrap().metadata()[NOISE_SD_METADATA]
            .parse()
            .unwrap();
        let expected = (asked.len() as f64 * 1001.0).sqrt();
        assert!(
            (sd - expected).abs() < 1e-9,
            "{condition}: sd {sd}, expected {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_of_no_rows_still_says_what_it_cost() {
    // Every cell of this grid is far below the threshold a too-large grid's cells must pass.
    let f = Federation::start_private(&TRUSTS, 3_000, 5, |_, p| {
        p.project_budget = 100.0;
        p.max_cells = 1;
    })
    .await;
    let sql = "SELECT primary_diagnosis, age_band, count(*) AS n FROM apc_episodes GROUP BY 1, 2";
    let result = f.coordinator.query(sql).await.unwrap();
    assert_eq!(result.num_rows(), 0);
    let provenance = result.provenance.summary();
    for trust in TRUSTS {
        assert!(provenance.contains(&format!("{trust} ρ = 0.05 ")), "{provenance}");
        assert_eq!(spent(&f, trust), Rho(50_000), "{trust}");
    }
    assert!(
        provenance.contains("released only the cells whose noisy count"),
        "{provenance}"
    );
}

/// A trust's own analyst asking the same question again gets the kept answer, and its footer
/// says it cost nothing (it once repeated the first answer's charge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analysts_repeated_question_is_free_and_says_so() {
    let f = one_trust().await;
    let analyst = f.nodes[0].analyst().await;
    let request = tessera_protocol::FragmentRequest::with_context(
        "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex",
        tessera_protocol::RequestContext::default(),
    );
    let provenance =
        |answer: &tessera_protocol::client::NodeAnswer| answer.schema.metadata()[PROVENANCE_METADATA].clone();
    let first = provenance(&analyst.query(&request).await.unwrap());
    assert!(
        first.contains("privacy spent: RRK ρ = 0.05 (project 0.05 of 100)"),
        "{first}"
    );
    let again = provenance(&analyst.query(&request).await.unwrap());
    assert!(
        again.contains("privacy spent: none (the same question was answered before"),
        "{again}"
    );
}

/// What a sum may be of with differential privacy, as README lists it: the cell rules and the
/// trust's bounds must both accept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_sum_may_be_of() {
    let f = one_trust().await;
    // (argument, answered)
    let cases = [
        ("los_days", true),
        ("2 * los_days", true),
        ("los_days / 7", true),
        ("least(los_days, 30)", true),
        ("greatest(cost_gbp, 100)", true),
        ("CASE WHEN los_days > 30 THEN 30 ELSE los_days END", true),
        ("CASE WHEN sex = 'F' THEN 1 ELSE 0 END", true),
        ("1", true),
        ("los_days - 1", false),
        ("los_days * los_days", false),
        ("los_days + cost_gbp", false),
    ];
    for (argument, answered) in cases {
        let sql = format!("SELECT sum({argument}) AS s FROM apc_episodes");
        let outcome = f.coordinator.query(&sql).await;
        assert_eq!(
            outcome.is_ok(),
            answered,
            "{argument}: {:?}",
            outcome.err().map(|e| e.message)
        );
    }
}

/// A condition on a dimension that has no public list of values (a flag) cannot leave a trust
/// without a cell: the question is answered (a check for contradicted conditions once refused it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_on_a_flag_is_answered() {
    let f = one_trust().await;
    let sql = "SELECT attended, count(*) AS n FROM op_appointments WHERE first_attendance GROUP BY attended";
    let result = f
        .coordinator
        .query(sql)
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
    assert!(result.num_rows() > 0);
    assert_eq!(spent(&f, "RRK"), Rho(50_000));
}
