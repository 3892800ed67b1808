//! Dominance (NK n = 2, p-percent) checked against hand-computed expectations, and the trusts'
//! rule that only their authenticated coordinator may ask for the largest contributions.
//!
//! Two trusts hold these admitted episodes (age band: episodes and costs):
//! - `18-29`: RRK 10 × £100, RTH 2 × £4,600. Total £10,200; the two largest, £9,200, are 90.2 %
//!   of it (> 90 %: the NK rule fires). What is left, £1,000, is 21.7 % of the largest (the
//!   p-percent rule at 10 % does not fire).
//! - `30-44`: RRK 10 × £1,000, RTH 2 × £1,000. Total £12,000; the two largest are 16.7 % of it;
//!   the rest is 1,000 % of the largest. Neither rule fires.
//! - `45-59`: RRK 11 × £100, RTH 1 × £20,000. Total £21,100; the two largest, £20,100, are
//!   95.3 % of it (NK fires); the rest, £1,000, is 5 % of the largest (< 10 %: p-percent fires).
//!
//! Every group has 12 episodes, so the threshold (10) never fires here; lengths of stay (not a
//! sensitive measure) are never checked for dominance.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float64Type;
use std::path::Path;
use tessera_coordinator::ErrorKind;
use tessera_disclosure::DisclosureConfig;
use tessera_protocol::FragmentRequest;
use tessera_support::{anonymous_tls, check_cases, compare, presenting, rows_of, Case, Cell, Footer, ANALYST};

use crate::disclosure::{coordinator, exact_rules, federation_of, write_rows, Small};

const RRK: &[(&str, usize, f64)] = &[("18-29", 10, 100.0), ("30-44", 10, 1_000.0), ("45-59", 11, 100.0)];
const RTH: &[(&str, usize, f64)] = &[("18-29", 2, 4_600.0), ("30-44", 2, 1_000.0), ("45-59", 1, 20_000.0)];

fn write_groups(dir: &Path, provider: &str, groups: &[(&str, usize, f64)]) {
    let rows = groups
        .iter()
        .flat_map(|(age, n, cost)| std::iter::repeat_n((*age, 2, *cost), *n))
        .collect::<Vec<_>>();
    write_rows(dir, provider, &rows);
}

pub(crate) async fn dominated_federation() -> Small {
    federation_of(&[("RRK", RRK), ("RTH", RTH)], write_groups).await
}

const BY_AGE: &str = "SELECT age_band, count(*) AS n, sum(cost_gbp) AS cost, avg(cost_gbp) AS mean_cost, \
                      sum(los_days) AS bed_days FROM apc_episodes GROUP BY age_band ORDER BY age_band";

fn row(age: &str, cost: Option<f64>) -> Vec<Cell> {
    let money = |v: Option<f64>| v.map_or(Cell::Null, Cell::Float);
    vec![
        Cell::from(age),
        Cell::Int(10),
        money(cost),
        money(cost.map(|c| c / 12.0)),
        Cell::Int(24),
    ]
}

/// The dominance rules and the sums and means they judge: one entry per (rules, SQL, cells, footer).
fn cases() -> Vec<Case> {
    let rules = |nk_k: f64, p_percent: f64| DisclosureConfig {
        nk_k,
        p_percent,
        ..exact_rules()
    };
    let defaults = exact_rules();
    let both_hidden = vec![row("18-29", None), row("30-44", Some(12_000.0)), row("45-59", None)];
    let only_45_59_hidden = vec![
        row("18-29", Some(10_200.0)),
        row("30-44", Some(12_000.0)),
        row("45-59", None),
    ];
    vec![
        // Defaults (NK k = 0.9, p = 10 %): 18-29 (NK) and 45-59 (both) hidden; 30-44 released.
        // Counts 12 round to 10; bed days 12 × 2 = 24 are not a sensitive measure.
        Case::rows_with(
            "NK and p-percent",
            defaults.clone(),
            BY_AGE,
            both_hidden.clone(),
            Footer::Is(crate::disclosure::RULES),
        ),
        // p-percent alone: only 45-59 (rest £1,000 < 10 % of £20,000).
        Case::rows(
            "p-percent alone",
            rules(1.0, defaults.p_percent),
            BY_AGE,
            only_45_59_hidden.clone(),
        ),
        // NK at k = 0.99: 18-29 (90.2 %) and 45-59 (95.3 %) pass NK; p-percent still hides 45-59.
        Case::rows(
            "lenient NK with p-percent",
            rules(0.99, defaults.p_percent),
            BY_AGE,
            only_45_59_hidden,
        ),
        Case::rows("NK alone", rules(defaults.nk_k, 0.0), BY_AGE, both_hidden),
        Case::rows_with(
            "both rules off",
            rules(1.0, 0.0),
            BY_AGE,
            vec![
                row("18-29", Some(10_200.0)),
                row("30-44", Some(12_000.0)),
                row("45-59", Some(21_100.0)),
            ],
            Footer::Lacks("dominance"),
        ),
        // 1,000,000 - cost turns the one large cost into the smallest value: its dominance would
        // go unseen, and the sum gives the cost back.
        Case::refused(
            "a transformed sensitive measure",
            defaults.clone(),
            "SELECT sum(1000000 - cost_gbp) FROM apc_episodes WHERE age_band = '45-59'",
            "only scaling by a positive constant is available",
        ),
        // Scaling is fine: 30-44 costs £12,000, in pence 1,200,000.
        Case::rows(
            "a scaled sensitive measure",
            defaults.clone(),
            "SELECT sum(cost_gbp * 100) AS pence FROM apc_episodes WHERE age_band = '30-44'",
            vec![vec![Cell::Float(1_200_000.0)]],
        ),
        // sum(1) is a count, and is rounded like one (12 → 10).
        Case::rows(
            "a count disguised as a sum",
            defaults,
            "SELECT sum(1) AS n FROM apc_episodes WHERE age_band = '45-59'",
            vec![vec![Cell::Int(10)]],
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dominated_sums_and_means_are_withheld_by_the_configured_rules() {
    let small = dominated_federation().await;
    check_cases(&cases(), |rules| coordinator(&small, rules.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_very_large_cost_is_not_recovered_by_any_route() {
    let small = dominated_federation().await;
    let c = coordinator(&small, exact_rules());
    // Knowing the others paid about £100 each, a released total of 45-59 would give away the
    // £20,000 patient to within £1,100; 18-29 would give away the two £4,600 stays.
    for sql in [
        "SELECT sum(cost_gbp) FROM apc_episodes WHERE age_band = '45-59'",
        "SELECT avg(cost_gbp) FROM apc_episodes WHERE age_band = '45-59'",
        "SELECT sum(cost_gbp * 1) FROM apc_episodes WHERE age_band = '45-59'",
        "SELECT sum(cost_gbp) FILTER (WHERE age_band = '45-59') FROM apc_episodes",
        "SELECT sum(CASE WHEN age_band = '45-59' THEN cost_gbp ELSE 0 END) FROM apc_episodes WHERE age_band <> '30-44'",
        "SELECT sum(cost_gbp) FROM apc_episodes WHERE age_band = '18-29' HAVING sum(cost_gbp) > 10000",
        "SELECT age_band, sum(cost_gbp) / count(*) FROM apc_episodes GROUP BY age_band",
    ] {
        let result = c.query(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        for row in rows_of(&result.batches) {
            if row.first().is_some_and(|c| matches!(c, Cell::Str(s) if s == "30-44")) {
                continue;
            }
            assert!(
                row.iter().all(|c| matches!(c, Cell::Null | Cell::Str(_))),
                "{sql}: released {row:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_authenticated_coordinator_gets_the_largest_contributions() {
    let small = dominated_federation().await;
    let rth = &small.nodes[1];
    let sql = "SELECT age_band, tessera_top2(cost_gbp) AS top FROM apc_episodes GROUP BY age_band ORDER BY age_band";
    // No certificate, or another trust's certificate from the same CA (not the pinned subject).
    for tls in [anonymous_tls(&rth.certs), presenting(&rth.certs, "RRK")] {
        let client = rth.client_with(&tls, None).await;
        let error = client.query(&FragmentRequest::new(sql)).await.unwrap_err();
        assert_eq!(error.code(), Some(tonic::Code::Unauthenticated), "{error}");
    }
    // A trust analyst's questions pass disclosure control, which has no such statistic.
    let error = rth.analyst().await.query(&FragmentRequest::new(sql)).await.unwrap_err();
    assert_ne!(error.code(), None, "{error}");
    // The coordinator's certificate opens it: RTH's two largest costs per group, largest first.
    let answer = rth.client.query(&FragmentRequest::new(sql)).await.unwrap();
    let batch = &answer.batches[0];
    let lists = batch.column(1).as_list::<i32>();
    let tops = (0..lists.len())
        .map(|i| {
            let values = lists.value(i);
            values.as_primitive::<Float64Type>().values().to_vec()
        })
        .collect::<Vec<_>>();
    assert_eq!(
        tops,
        vec![vec![4_600.0, 4_600.0], vec![1_000.0, 1_000.0], vec![20_000.0]]
    );
    // Even the coordinator may not ask for max() of a sensitive measure.
    let error = rth
        .client
        .query(&FragmentRequest::new("SELECT max(cost_gbp) FROM apc_episodes"))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(tonic::Code::PermissionDenied));

    // The trust's audit log names who the node authenticated, never what a caller claimed.
    let log = std::fs::read_to_string(&rth.audit_log).unwrap();
    let entries = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .collect::<Vec<_>>();
    let field = |i: usize, key: &str| entries[i][key].as_str().unwrap_or_default().to_string();
    assert_eq!(
        (field(0, "role"), field(0, "principal")),
        ("unauthenticated".into(), "anonymous".into())
    );
    assert_eq!(
        (field(1, "role"), field(1, "principal")),
        (
            "unauthenticated".into(),
            "certificate CN=RRK, O=Tessera development".into()
        )
    );
    assert_eq!(
        (field(2, "role"), field(2, "principal")),
        ("analyst".into(), ANALYST.into())
    );
    let last = entries.len() - 2;
    assert_eq!(field(last, "role"), "coordinator");
    assert_eq!(field(last, "principal"), small.certs.coordinator_subject);
    assert_eq!(field(last, "decision"), "allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_without_a_certificate_refuses_sensitive_sums_and_is_turned_away_for_the_rest() {
    let small = dominated_federation().await;
    // Without [tls] its links are plaintext, which the trusts' TLS ports never answer.
    let mut nodes = small.entries.clone();
    for node in &mut nodes {
        node.url = node.url.replace("https://", "http://");
    }
    let config = tessera_coordinator::FederationConfig {
        federation: Default::default(),
        nodes,
        disclosure: DisclosureConfig {
            release_log: Some(small.dir().join("no-token.jsonl")),
            ..exact_rules()
        },
        tls: None,
        server: None,
    };
    let c = tessera_coordinator::Coordinator::new(config, &tessera_schemas::Catalog::builtin()).unwrap();
    let error = c.query("SELECT avg(cost_gbp) FROM apc_episodes").await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Query);
    assert_eq!(
        error.message,
        "avg(apc_episodes.cost_gbp) needs its largest contributions (for the dominance rules and the noise on sums), \
         and trusts send them only to the coordinator they recognise by its certificate: set [tls] (ca, cert, key) \
         in federation.toml"
    );
    let error = c
        .query("SELECT count(*) AS n, sum(los_days) AS bed_days FROM apc_episodes")
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Connection, "{error}");
    // With its certificate, the same question is answered.
    let result = coordinator(&small, exact_rules())
        .query("SELECT count(*) AS n, sum(los_days) AS bed_days FROM apc_episodes")
        .await
        .unwrap();
    compare(&rows_of(&result.batches), &[vec![Cell::Int(35), Cell::Int(72)]], true).unwrap();
}

#[test]
fn dominance_settings_and_links_are_checked_at_start() {
    let bad = |edit: fn(&mut DisclosureConfig)| {
        let mut config = exact_rules();
        edit(&mut config);
        config.check().unwrap_err()
    };
    assert_eq!(
        bad(|c| c.nk_k = 0.0),
        "[disclosure] nk_k: must be above 0 and at most 1 (1 turns the NK rule off), not 0"
    );
    assert_eq!(
        bad(|c| c.nk_k = 1.5),
        "[disclosure] nk_k: must be above 0 and at most 1 (1 turns the NK rule off), not 1.5"
    );
    assert_eq!(
        bad(|c| c.p_percent = 10.0),
        "[disclosure] p_percent: must be a share from 0 (off) to below 1, e.g. 0.10, not 10"
    );
    assert_eq!(
        bad(|c| c.p_percent = f64::NAN),
        "[disclosure] p_percent: must be a share from 0 (off) to below 1, e.g. 0.10, not NaN"
    );

    let federation =
        tessera_coordinator::FederationConfig::new("r", "p", [("RRK".to_string(), "https://127.0.0.1:1".to_string())]);
    assert_eq!(
        federation.check().unwrap_err(),
        "[[nodes]] `RRK`: an https:// url needs a [tls] section (ca, cert, key)"
    );

    let node = tessera_node::NodeConfig::for_generated("RRK", "127.0.0.1:0", &["apc_episodes".into()]);
    assert!(node
        .check()
        .unwrap_err()
        .starts_with("[tls]: a node serves only over TLS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dominated_cell_is_not_recovered_from_a_later_total() {
    let small = dominated_federation().await;
    let c = coordinator(&small, DisclosureConfig::default());
    let result = c
        .query("SELECT age_band, sum(cost_gbp) AS cost FROM apc_episodes GROUP BY age_band ORDER BY age_band")
        .await
        .unwrap();
    let rows = rows_of(&result.batches);
    // 18-29 (two costs of £4,600 make 90 % of £10,200) and 45-59 (£20,000 of £21,100) are withheld.
    assert!(
        matches!(rows[0][1], Cell::Null) && matches!(rows[2][1], Cell::Null),
        "{rows:?}"
    );
    let Cell::Float(released) = rows[1][1] else {
        panic!("30-44 is released: {rows:?}")
    };
    // 18-29 and 30-44 together (£22,200, not dominated) less the released 30-44 would be the
    // dominated £10,200 — but both are perturbed, with unrelated noise, like the counts of their
    // contributors (up to ±3 of 24 and ±2 of 12, at their mean contribution) and by up to 10 % of
    // their largest contribution (£4,600 and £1,000): what is left is not the cell.
    let result = c
        .query("SELECT sum(cost_gbp) AS cost FROM apc_episodes WHERE age_band <> '45-59'")
        .await
        .unwrap();
    let Cell::Float(total) = rows_of(&result.batches)[0][0] else {
        panic!("the total is released")
    };
    assert!(
        (total - 22_200.0).abs() <= 460.0 + 3.0 * 22_200.0 / 24.0,
        "total {total}"
    );
    assert!((released - 12_000.0).abs() <= 100.0 + 2.0 * 1_000.0, "30-44 {released}");
    let recovered = total - released;
    assert!((recovered - 10_200.0).abs() > 1.0, "recovered {recovered}");
}
