//! The pure pieces, as tables of cases: how each aggregate is decomposed into what a trust
//! computes and what the centre merges, and the exact merge of second moments.

use datafusion::scalar::ScalarValue;
use std::sync::Arc;
use tessera_coordinator::moments::{Moments, Statistic};

use tessera_coordinator::{Coordinator, FederationConfig, TrustLink};
use tessera_disclosure::DisclosureConfig;
use tessera_protocol::NodeClient;
use tessera_schemas::Catalog;

/// How a case makes its disclosure rules.
type Rules = fn() -> DisclosureConfig;

/// One (x, y) observation.
type Pair = (f64, f64);

/// A coordinator that is never asked to run anything: EXPLAIN plans without contacting a trust.
fn planner(disclosure: DisclosureConfig) -> Coordinator {
    let mut config = FederationConfig::new(
        "unit",
        "decomposition",
        [("RRK".to_string(), "http://127.0.0.1:9".to_string())],
    );
    config.disclosure = disclosure;
    let link = TrustLink {
        name: "RRK".into(),
        service: Arc::new(NodeClient::lazy("http://127.0.0.1:9", None).expect("a valid url")),
    };
    Coordinator::with_links(config, &Catalog::builtin(), vec![link], Default::default()).expect("coordinator")
}

/// The fragment a trust receives for `sql` (the first one).
async fn fragment(coordinator: &Coordinator, sql: &str) -> String {
    let text = coordinator.explain(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let at = text
        .find("Fragment 1")
        .unwrap_or_else(|| panic!("{sql}: no fragment in\n{text}"));
    text[at..].lines().nth(1).unwrap_or_default().trim().to_string()
}

/// `fragment` with table prefixes dropped and the cell key's argument list (every column of the
/// table) shown as `*`, so expectations read like the decomposition table in the docs.
fn abbreviate(fragment: &str) -> String {
    let short = fragment.replace("apc_episodes.", "");
    let columns = Catalog::builtin()
        .contract("apc_episodes")
        .unwrap()
        .columns
        .iter()
        .map(|c| c.name.clone())
        .collect::<Vec<_>>();
    short.replace(
        &format!("tessera_cell_key({})", columns.join(", ")),
        "tessera_cell_key(*)",
    )
}

#[tokio::test]
async fn each_aggregate_decomposes_into_its_documented_partials() {
    // (disclosure control, the researcher's SQL, the fragment every trust receives)
    let off = DisclosureConfig::off;
    let on = DisclosureConfig::default;
    let cases: &[(Rules, &str, &str)] = &[
        (off, "SELECT count(*) FROM apc_episodes", "SELECT count(1) AS p0 FROM apc_episodes"),
        (off, "SELECT count(los_days) FROM apc_episodes", "SELECT count(los_days) AS p0 FROM apc_episodes"),
        (off, "SELECT sum(los_days) FROM apc_episodes", "SELECT sum(los_days) AS p0 FROM apc_episodes"),
        (off, "SELECT avg(los_days) FROM apc_episodes", "SELECT sum(los_days) AS p0, count(los_days) AS p1 FROM apc_episodes"),
        (off, "SELECT min(los_days), max(los_days) FROM apc_episodes", "SELECT min(los_days) AS p0, max(los_days) AS p1 FROM apc_episodes"),
        (
            off,
            "SELECT var_samp(los_days) FROM apc_episodes",
            "SELECT regr_count(los_days, los_days) AS p0, regr_avgx(los_days, los_days) AS p1, regr_sxx(los_days, los_days) AS p2 FROM apc_episodes",
        ),
        (
            off,
            "SELECT corr(los_days, cost_gbp) FROM apc_episodes",
            "SELECT regr_count(cost_gbp, los_days) AS p0, regr_avgx(cost_gbp, los_days) AS p1, regr_sxx(cost_gbp, los_days) AS p2, \
             regr_avgy(cost_gbp, los_days) AS p3, regr_syy(cost_gbp, los_days) AS p4, regr_sxy(cost_gbp, los_days) AS p5 FROM apc_episodes",
        ),
        // Distinct values travel as a group column (d0) and are counted centrally...
        (
            off,
            "SELECT count(DISTINCT treatment_specialty) FROM apc_episodes",
            "SELECT treatment_specialty AS d0 FROM apc_episodes GROUP BY treatment_specialty",
        ),
        // ...unless every group belongs to one trust.
        (
            off,
            "SELECT provider_code, count(DISTINCT treatment_specialty) FROM apc_episodes GROUP BY 1",
            "SELECT provider_code AS g0, count(DISTINCT treatment_specialty) AS p0 FROM apc_episodes GROUP BY provider_code",
        ),
        // Protected: the records of each group and their cell key come too.
        (on, "SELECT count(*) FROM apc_episodes", "SELECT count(1) AS p0, tessera_cell_key(*) AS p1 FROM apc_episodes"),
        // A sum of a sensitive measure: its contributors, their cell key and the two largest.
        (
            on,
            "SELECT sum(cost_gbp) FROM apc_episodes",
            "SELECT count(1) AS p0, sum(cost_gbp) AS p1, count(1) FILTER (WHERE (cost_gbp <> 0)) AS p2, \
             tessera_cell_key(*) FILTER (WHERE (cost_gbp <> 0)) AS p3, tessera_top2(cost_gbp) AS p4 FROM apc_episodes",
        ),
        // A mean: its sum's parts, and the records it is a mean of.
        (
            on,
            "SELECT avg(los_days) FROM apc_episodes",
            "SELECT count(1) AS p0, sum(los_days) AS p1, count(los_days) AS p2, count(1) FILTER (WHERE (los_days <> 0)) AS p3, \
             tessera_cell_key(*) FILTER (WHERE (los_days <> 0)) AS p4, tessera_top2(los_days) AS p5, tessera_cell_key(*) AS p6 \
             FROM apc_episodes",
        ),
    ];
    let mut failures = Vec::new();
    for (rules, sql, expected) in cases {
        let got = abbreviate(&fragment(&planner(rules()), sql).await);
        let expected = expected.split_whitespace().collect::<Vec<_>>().join(" ");
        if got != expected {
            failures.push(format!("{sql}\n  expected {expected}\n  got      {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Moments of `pairs` computed directly (two-pass).
fn direct(pairs: &[(f64, f64)]) -> Moments {
    let n = pairs.len() as f64;
    let mean_x = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    Moments {
        n,
        mean_x,
        mean_y,
        sxx: pairs.iter().map(|p| (p.0 - mean_x).powi(2)).sum(),
        syy: pairs.iter().map(|p| (p.1 - mean_y).powi(2)).sum(),
        sxy: pairs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum(),
    }
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[test]
fn moments_merged_in_any_split_equal_the_whole() {
    let line = (1..=20).map(|i| (i as f64, 3.0 * i as f64 + 1.0)).collect::<Vec<_>>();
    let costs = (0..50)
        .map(|i| (1e6 + (i * 7 % 13) as f64, (i % 5) as f64 - 2.5))
        .collect::<Vec<_>>();
    // (data, where to cut it into parts: empty parts included)
    let cases: &[(&[Pair], &[usize])] = &[
        (&line, &[10]),
        (&line, &[1, 2, 19]),
        (&line, &[0, 0, 20]),
        (&costs, &[17, 33]),
        (&costs, &[49]),
    ];
    for (data, cuts) in cases {
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(data.len());
        let mut merged = Moments::default();
        for part in bounds.windows(2) {
            let slice = &data[part[0]..part[1]];
            if !slice.is_empty() {
                merged.combine(&direct(slice));
            }
        }
        let whole = direct(data);
        let fields = |m: &Moments| [m.n, m.mean_x, m.mean_y, m.sxx, m.syy, m.sxy];
        for (got, want) in fields(&merged).into_iter().zip(fields(&whole)) {
            assert!(near(got, want), "cuts {cuts:?}: {merged:?} != {whole:?}");
        }
    }
}

#[test]
fn statistics_from_moments_follow_datafusion_null_rules() {
    // y = 2x over x = 1..4: var_samp(x) = 5/3, slope 2, intercept 0, r² 1, corr 1.
    let line = direct(&[(1.0, 2.0), (2.0, 4.0), (3.0, 6.0), (4.0, 8.0)]);
    let one = direct(&[(5.0, 1.0)]);
    let flat = direct(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]);
    let float = |v: f64| ScalarValue::Float64(Some(v));
    let null = ScalarValue::Float64(None);
    let cases = [
        (line, Statistic::VarSamp, float(5.0 / 3.0)),
        (line, Statistic::VarPop, float(1.25)),
        (line, Statistic::CovarSamp, float(10.0 / 3.0)),
        (line, Statistic::RegrSlope, float(2.0)),
        (line, Statistic::RegrIntercept, float(0.0)),
        (line, Statistic::RegrR2, float(1.0)),
        (line, Statistic::Corr, float(1.0)),
        (line, Statistic::RegrCount, ScalarValue::UInt64(Some(4))),
        (one, Statistic::VarSamp, null.clone()),
        (one, Statistic::VarPop, float(0.0)),
        (flat, Statistic::Corr, null.clone()),
        (flat, Statistic::RegrSlope, null),
    ];
    for (moments, statistic, expected) in cases {
        let got = moments.evaluate(statistic);
        let same = match (&got, &expected) {
            (ScalarValue::Float64(Some(a)), ScalarValue::Float64(Some(b))) => near(*a, *b),
            _ => got == expected,
        };
        assert!(same, "{statistic:?} of {moments:?}: {got:?}, expected {expected:?}");
    }
}

#[tokio::test]
async fn a_coordinator_answers_only_for_its_own_project() {
    // Its budget and release log are its project's: a question charged to another is refused
    // before anything is planned or asked.
    let coordinator = planner(DisclosureConfig::default());
    let elsewhere = tessera_coordinator::RequestContext::new("ana", "another-project");
    let error = coordinator
        .query_as(&elsewhere, "SELECT count(*) FROM apc_episodes")
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        "this coordinator answers for project \"decomposition\", not \"another-project\""
    );
}
