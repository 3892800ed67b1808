//! Differential privacy at the trusts (`[privacy] mode = "dp"`): every answer is noised at the
//! node, over a grid fixed by public values, against a budget each trust keeps per project.

use std::collections::BTreeMap;

use tessera_coordinator::{Coordinator, ErrorKind};
use tessera_privacy::{BudgetLedger, Rho};
use tessera_protocol::names::NOISE_SD_METADATA;
use tessera_schemas::Catalog;
use tessera_support::{rows_of, Cell, Federation};

const TRUSTS: [&str; 3] = ["RRK", "RTH", "RJ1"];

async fn private_federation(budget: f64) -> Federation {
    Federation::start_private(&TRUSTS, 6_000, 11, |_, p| p.project_budget = budget).await
}

fn text(cell: &Cell) -> String {
    match cell {
        Cell::Null => "NULL".into(),
        Cell::Int(i) => i.to_string(),
        Cell::Float(f) => f.to_string(),
        Cell::Str(s) => s.clone(),
    }
}

fn number(cell: &Cell) -> f64 {
    match cell {
        Cell::Int(i) => *i as f64,
        Cell::Float(f) => *f,
        other => panic!("not a number: {other:?}"),
    }
}

/// Rows keyed by their first column, with the last column's value.
fn by_key(batches: &[datafusion::arrow::array::RecordBatch]) -> BTreeMap<String, f64> {
    rows_of(batches)
        .iter()
        .map(|row| {
            (
                row[..row.len() - 1].iter().map(text).collect::<Vec<_>>().join("|"),
                number(row.last().unwrap()),
            )
        })
        .collect()
}

fn domain_size(name: &str) -> usize {
    Catalog::builtin().domain(name).unwrap().codes().count()
}

async fn refusal(c: &Coordinator, sql: &str) -> String {
    match c.query(sql).await {
        Ok(r) => panic!("{sql} was answered with {} rows", r.num_rows()),
        Err(e) => {
            assert_eq!(e.kind, ErrorKind::Query, "{sql}: {}", e.message);
            e.message
        }
    }
}

/// What the test project has spent at `trust`, from its ledger.
fn spent(f: &Federation, trust: &str) -> Rho {
    ledger(f, trust).account("exactness").spent
}

fn ledger(f: &Federation, trust: &str) -> BudgetLedger {
    BudgetLedger::open(f.data.trust_dir(trust).join("privacy-ledger.jsonl")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_public_grid_is_released_with_noise() {
    let f = private_federation(100.0).await;
    // (question, reference question with the same keys, cells the grid has)
    let cases = [
        (
            "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band",
            "SELECT age_band, count(*) AS n FROM apc_episodes GROUP BY age_band",
            domain_size("age_band"),
        ),
        (
            "SELECT provider_code, sex, count(*) AS n FROM apc_episodes GROUP BY provider_code, sex",
            "SELECT provider_code, sex, count(*) AS n FROM apc_episodes GROUP BY provider_code, sex",
            TRUSTS.len() * domain_size("sex"),
        ),
        (
            "SELECT age_band, count(*) AS n FROM apc_episodes WHERE age_band IN ('0-4', '5-17', '80+') GROUP BY age_band",
            "SELECT age_band, count(*) AS n FROM apc_episodes WHERE age_band IN ('0-4', '5-17', '80+') GROUP BY age_band",
            3,
        ),
        (
            "SELECT date_trunc('month', admission_date) AS month, count(*) AS n FROM apc_episodes GROUP BY 1",
            "SELECT date_trunc('month', admission_date) AS month, count(*) AS n FROM apc_episodes GROUP BY 1",
            24,
        ),
        (
            "SELECT patient_class, sum(los_days) AS bed_days FROM apc_episodes GROUP BY patient_class",
            "SELECT patient_class, sum(least(los_days, 365)) AS bed_days FROM apc_episodes GROUP BY patient_class",
            domain_size("patient_class"),
        ),
    ];
    for (sql, reference, cells) in cases {
        let result = f.coordinator.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let released = by_key(&result.batches);
        assert_eq!(released.len(), cells, "{sql}: {released:?}");
        let truth = by_key(&f.reference(reference).await.unwrap());
        let mut moved = 0;
        for (key, value) in &released {
            let exact = truth.get(key).copied().unwrap_or(0.0);
            // Counts: σ = √1001 ≈ 31.6 per trust at ρ = 0.05 with 10 records a person; sums of
            // stays are clamped to 365 a record, so their noise is 365 times larger.
            let sd = if sql.contains("sum(") {
                365.0 * 31.7 * 3f64.sqrt()
            } else {
                31.7 * 3f64.sqrt()
            };
            assert!(
                (value - exact).abs() < 6.0 * sd,
                "{sql}: {key} released {value}, truth {exact}"
            );
            assert_eq!(value.fract(), 0.0, "{sql}: {key} released {value}, not a whole number");
            moved += usize::from(*value != exact);
        }
        // A draw of exactly zero noise has probability about 1 in 140 per value.
        assert!(
            moved * 2 >= released.len(),
            "{sql}: only {moved} of {} values carry noise",
            released.len()
        );
        assert!(
            result.provenance.summary().contains("privacy spent: "),
            "{}",
            result.provenance.summary()
        );
        assert!(
            result.disclosure.contains("differential privacy"),
            "{}",
            result.disclosure
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_answers_nothing_exact_even_to_its_coordinator() {
    let f = private_federation(100.0).await;
    let node = &f.nodes[0];
    let fragment =
        "SELECT apc_episodes.age_band AS g0, count(1) AS p0 FROM apc_episodes GROUP BY apc_episodes.age_band";
    let answer = node.ask(fragment).await.unwrap();
    assert_eq!(answer.num_rows(), domain_size("age_band"));
    let field = answer.schema.field_with_name("p0").unwrap();
    let sd: f64 = field
        .metadata()
        .get(NOISE_SD_METADATA)
        .expect("noise sd in field metadata")
        .parse()
        .unwrap();
    assert!((sd - 1001f64.sqrt()).abs() < 1e-9, "σ = {sd}");
    // The partials disclosure control would need in sdc mode are not answered at all.
    let refused = node
        .ask("SELECT count(1) AS p0, tessera_top2(apc_episodes.cost_gbp) AS p1 FROM apc_episodes")
        .await
        .unwrap_err();
    // A coordinator left in sdc mode hears what to change.
    assert!(
        refused
            .to_string()
            .contains("its operator must set [disclosure] mode = \"dp\""),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_question_gets_the_same_answer_at_no_cost() {
    let f = private_federation(100.0).await;
    let sql = "SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex";
    let first = f.coordinator.query(sql).await.unwrap();
    let first_spend = spent(&f, "RRK");
    assert_eq!(first_spend, Rho(50_000));
    for _ in 0..3 {
        let again = f.coordinator.query(sql).await.unwrap();
        assert_eq!(
            by_key(&again.batches),
            by_key(&first.batches),
            "averaging repeats would shrink the noise"
        );
        assert!(
            again.provenance.summary().contains("privacy spent: none"),
            "{}",
            again.provenance.summary()
        );
    }
    assert_eq!(spent(&f, "RRK"), first_spend);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_cannot_spend_past_its_budget_at_any_trust() {
    let f = private_federation(0.12).await;
    let question = |band: &str| format!("SELECT count(*) AS n FROM apc_episodes WHERE age_band = '{band}'");
    f.coordinator.query(&question("0-4")).await.unwrap();
    f.coordinator.query(&question("5-17")).await.unwrap();
    let refused = refusal(&f.coordinator, &question("18-29")).await;
    assert!(refused.contains("would be overspent"), "{refused}");
    assert!(refused.contains("ρ = 0.02 is left"), "{refused}");
    for trust in TRUSTS {
        assert_eq!(spent(&f, trust), Rho(100_000), "{trust}");
    }
}

/// A question one trust cannot afford is refused before any trust answers: every trust reserves
/// first, and the others give their reservations back, so nothing is released or charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_one_trust_cannot_afford_costs_the_others_nothing() {
    let f = Federation::start_private(&TRUSTS, 6_000, 11, |trust, p| {
        p.project_budget = if trust == "RJ1" { 0.07 } else { 1.0 };
    })
    .await;
    let question = |band: &str| format!("SELECT count(*) AS n FROM apc_episodes WHERE age_band = '{band}'");
    f.coordinator.query(&question("0-4")).await.unwrap();
    let refused = refusal(&f.coordinator, &question("5-17")).await;
    assert!(
        refused.contains("RJ1") && refused.contains("would be overspent"),
        "{refused}"
    );
    for trust in ["RRK", "RTH"] {
        assert_eq!(
            spent(&f, trust),
            Rho(50_000),
            "{trust} was charged for a question another trust refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_outside_the_whitelist_are_refused() {
    let f = private_federation(100.0).await;
    let cases = [
        ("SELECT max(los_days) FROM apc_episodes", "max(…) is not one"),
        ("SELECT corr(los_days, cost_gbp) FROM apc_episodes", "of two variables"),
        (
            "SELECT count(DISTINCT person_id) FROM apc_episodes",
            "not supported yet",
        ),
        (
            "SELECT sum(los_days / los_days) FROM apc_episodes",
            "only scaling by a positive constant",
        ),
    ];
    for (sql, reason) in cases {
        let message = refusal(&f.coordinator, sql).await;
        assert!(message.contains(reason), "{sql}: {message}");
    }
    for trust in TRUSTS {
        assert_eq!(spent(&f, trust), Rho(0), "a refused question costs nothing");
    }
}

/// The cell key method gave two counts of the same records the same noise, so `count(*)` and
/// `count(*) FILTER (WHERE diagnosis <> X)` were equal exactly when no record had X. With noise
/// drawn afresh for every statistic, equality is a coincidence, as likely for an empty group as
/// for a small one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_answers_do_not_tell_an_empty_group_from_a_small_one() {
    let f = private_federation(1000.0).await;
    let codes = Catalog::builtin()
        .domain("icd10_3char")
        .unwrap()
        .codes()
        .map(str::to_string)
        .collect::<Vec<_>>();
    // A cell with at least 8 diagnoses absent and 8 present with 1–9 records.
    let mut fixture = None;
    for band in ["0-4", "5-17", "18-29", "80+"] {
        for decile in 1..=10 {
            let cell = format!("age_band = '{band}' AND imd_decile = {decile}");
            let counts = f
                .reference(&format!(
                    "SELECT primary_diagnosis, count(*) AS n FROM apc_episodes WHERE {cell} GROUP BY primary_diagnosis"
                ))
                .await
                .unwrap();
            let present = by_key(&counts);
            let empty = codes
                .iter()
                .filter(|c| !present.contains_key(*c))
                .take(12)
                .cloned()
                .collect::<Vec<_>>();
            let small = present
                .iter()
                .filter(|(_, n)| (1.0..10.0).contains(*n))
                .map(|(c, _)| c.clone())
                .take(12)
                .collect::<Vec<_>>();
            if fixture.is_none() && empty.len() >= 8 && small.len() >= 8 {
                fixture = Some((cell, empty, small));
            }
        }
    }
    let (cell, empty, small) = fixture.expect("a cell with empty and small diagnosis groups");
    let mut equal = BTreeMap::from([("empty", 0), ("small", 0)]);
    for (kind, targets) in [("empty", &empty), ("small", &small)] {
        for code in targets {
            let sql = format!(
                "SELECT count(*) AS a, count(*) FILTER (WHERE primary_diagnosis <> '{code}') AS b FROM apc_episodes WHERE {cell}"
            );
            let rows = rows_of(&f.coordinator.query(&sql).await.unwrap().batches);
            *equal.get_mut(kind).unwrap() += usize::from(text(&rows[0][0]) == text(&rows[0][1]));
        }
    }
    // Two independent noises of σ ≈ 100 (merged over three trusts) coincide about 0.3 % of the
    // time; under the cell key method every empty group compared equal.
    assert!(equal["empty"] <= 2 && equal["small"] <= 2, "equalities: {equal:?}");
}

/// Under the cell key method a cell was withheld exactly when its count was below 10, and the
/// pattern of withheld subsets solved small counts. Here no cell is ever withheld.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_withheld_so_subsets_tell_nothing_by_their_absence() {
    let f = private_federation(1000.0).await;
    let subsets = ["1", "1, 2", "3, 4, 5", "10"];
    for deciles in subsets {
        let sql = format!(
            "SELECT sex, count(*) AS n FROM apc_episodes WHERE age_band = '80+' AND imd_decile IN ({deciles}) AND primary_diagnosis = 'C61' GROUP BY sex"
        );
        let result = f.coordinator.query(&sql).await.unwrap();
        assert_eq!(result.num_rows(), domain_size("sex"), "{sql}");
    }
}

/// The node's `max_groups` refusal counted the groups that hold records: with a grid of 24
/// months and a limit near 20, whether a question was refused told how many months had
/// records. With differential privacy only the grid (public) bounds an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whether_a_question_is_refused_does_not_depend_on_which_cells_hold_records() {
    let data = tessera_support::nodes::TestData::generate(&TRUSTS[..1], 3_000, 5);
    let config = data.node_config("RRK", |c| {
        c.privacy.mode = tessera_node::node::dp::PrivacyMode::Dp;
        c.privacy.project_budget = 100.0;
        c.policy.max_groups = 20;
    });
    let node = tessera_support::nodes::TestNode::start(&config).await;
    let by_month = "SELECT date_trunc('month', apc_episodes.admission_date) AS g0, count(1) AS p0 FROM apc_episodes GROUP BY date_trunc('month', apc_episodes.admission_date)";
    let answer = node.ask(by_month).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.num_rows(), 24);
}

/// A trust keeps its answers on disk: after a restart the same question gets the same answer
/// at no cost, so restarting a node (or waiting for one to restart) cannot buy fresh noise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_answer_survives_a_restart_of_the_trust() {
    let data = tessera_support::nodes::TestData::generate(&TRUSTS[..1], 3_000, 5);
    let config = data.node_config("RRK", |c| c.privacy.mode = tessera_node::node::dp::PrivacyMode::Dp);
    let sql = "SELECT apc_episodes.sex AS g0, count(1) AS p0 FROM apc_episodes GROUP BY apc_episodes.sex";
    let first = {
        let node = tessera_support::nodes::TestNode::start(&config).await;
        node.ask(sql).await.unwrap_or_else(|e| panic!("{e}"))
    };
    let restarted = tessera_support::nodes::TestNode::start(&config).await;
    let again = restarted.ask(sql).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        by_key(&again.batches),
        by_key(&first.batches),
        "a restart gave fresh noise"
    );
    let ledger = BudgetLedger::open(data.trust_dir("RRK").join("privacy-ledger.jsonl")).unwrap();
    assert_eq!(
        ledger.account("battery").spent,
        Rho(50_000),
        "the same question was charged twice"
    );
}

/// A question whose conditions leave a trust no public cell (another trust's code) is answered
/// there with no rows, at no cost: the contracts alone decide it, so it tells nothing. (It
/// failed the whole question before.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trust_the_conditions_leave_no_cell_answers_nothing_and_is_charged_nothing() {
    let f = private_federation(1.0).await;
    let sql = "SELECT provider_code, count(*) AS n FROM apc_episodes WHERE provider_code IN ('RRK') GROUP BY 1";
    let result = f.coordinator.query(sql).await.unwrap();
    let rows = by_key(&result.batches);
    assert_eq!(rows.keys().collect::<Vec<_>>(), ["RRK"]);
    assert_eq!(spent(&f, "RRK"), Rho(50_000));
    for other in ["RTH", "RJ1"] {
        assert_eq!(spent(&f, other), Rho(0), "{other}");
    }
}

/// `tessera budget`: the project's account as each trust's own ledger keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_researcher_reads_what_the_project_spent_at_each_trust() {
    let f = private_federation(1.0).await;
    let context = f.coordinator.context();
    let before = f.coordinator.budget(&context).await;
    f.coordinator
        .query("SELECT sex, count(*) AS n FROM apc_episodes GROUP BY sex")
        .await
        .unwrap();
    let after = f.coordinator.budget(&context).await;
    assert_eq!(after.len(), TRUSTS.len());
    for ((trust, before), (_, after)) in before.into_iter().zip(after) {
        let (before, after) = (before.unwrap().unwrap(), after.unwrap().unwrap());
        assert_eq!((before.spent, before.questions), (0, 0), "{trust}");
        assert_eq!(
            (after.spent, after.questions, after.budget),
            (50_000, 1, 1_000_000),
            "{trust}"
        );
        assert_eq!(Rho(after.spent), spent(&f, &trust));
    }
}
