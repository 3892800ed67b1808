//! The dashboard's pieces that decide what is asked and what is drawn: filters written into a
//! chart's SQL (only as literals of a trust code and whole months), and charts that draw exactly
//! the released values and mark the withheld ones. The pages themselves are tested in a real
//! browser (tests/python/browser).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use tessera_node::web::chart::{svg, Plot};
use tessera_node::web::dashboards::{expand, parse_month, Dashboards, Filters, Kind};

fn filters(trust: Option<&str>, from: Option<&str>, to: Option<&str>) -> Filters {
    Filters {
        trust: trust.map(str::to_string),
        from: from.and_then(parse_month),
        until: to.and_then(parse_month).map(tessera_node::web::dashboards::next_month),
    }
}

#[test]
fn filters_become_conditions_on_the_charts_columns_and_nothing_else() {
    let sql = "SELECT count(*) FROM apc_episodes WHERE {trust:provider_code} AND {period:a.admission_date}";
    let cases: &[(Filters, Result<&str, &str>)] = &[
        (Filters::default(), Ok("SELECT count(*) FROM apc_episodes WHERE (TRUE) AND (TRUE)")),
        (
            filters(Some("RRK"), Some("2024-01"), Some("2024-03")),
            Ok("SELECT count(*) FROM apc_episodes WHERE (provider_code = 'RRK') AND (a.admission_date >= DATE '2024-01-01' AND a.admission_date < DATE '2024-04-01')"),
        ),
        (
            filters(None, None, Some("2024-12")),
            Ok("SELECT count(*) FROM apc_episodes WHERE (TRUE) AND (a.admission_date < DATE '2025-01-01')"),
        ),
        (filters(Some("RRK' OR '1'='1"), None, None), Err("is not a trust code")),
    ];
    for (f, expected) in cases {
        match (expand(sql, f), expected) {
            (Ok(out), Ok(expected)) => assert_eq!(out, *expected),
            (Err(e), Err(reason)) => assert!(e.contains(reason), "{e}"),
            (out, expected) => panic!("{f:?}: {out:?}, expected {expected:?}"),
        }
    }
    // Markers must name a column; anything else is refused.
    for bad in [
        "{trust:x); DROP TABLE y}",
        "{colour:provider_code}",
        "{trust}",
        "{period:a.b.c}",
        "{trust:provider_code",
    ] {
        assert!(expand(bad, &Filters::default()).is_err(), "{bad}");
    }
    assert_eq!(parse_month("2024-13"), None);
    assert_eq!(parse_month("24-01"), None);
}

#[test]
fn the_built_in_dashboard_has_the_six_productivity_charts() {
    let dashboards = Dashboards::load(None).unwrap();
    let default = dashboards.get(None).unwrap();
    let titles: Vec<&str> = default.charts.iter().map(|c| c.title.as_str()).collect();
    assert_eq!(titles.len(), 6, "{titles:?}");
    for needle in [
        "Admissions",
        "four-hour",
        "length of stay",
        "Day-case",
        "did-not-attend",
        "per FTE",
    ] {
        assert!(titles.iter().any(|t| t.contains(needle)), "{needle} in {titles:?}");
    }
}

fn batch(trusts: &[&str], months: &[&str], values: &[Option<f64>]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("trust", DataType::Utf8, false),
        Field::new("month", DataType::Utf8, false),
        Field::new("n", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(trusts.to_vec())),
        Arc::new(StringArray::from(months.to_vec())),
        Arc::new(Float64Array::from(values.to_vec())),
    ];
    RecordBatch::try_new(schema, columns).unwrap()
}

#[test]
fn charts_draw_every_released_value_and_mark_every_withheld_one() {
    // RTH's February is missing (withheld), RRK's March is NULL (a class below the threshold).
    let answer = batch(
        &["RRK", "RTH", "RRK", "RRK", "RTH"],
        &["2024-01", "2024-01", "2024-02", "2024-03", "2024-03"],
        &[Some(120.0), Some(80.0), Some(130.0), None, Some(75.0)],
    );
    let cases = [(Kind::Line, "class=\"point\""), (Kind::Bar, "class=\"bar\"")];
    for (kind, mark) in cases {
        let plot = Plot::of(std::slice::from_ref(&answer), "month", "n", Some("trust")).unwrap();
        assert_eq!(plot.drawn(), 4);
        let svg = svg(&plot, kind, "c", "Admissions <per> trust", "admissions");
        assert_eq!(svg.matches(mark).count(), 4, "{kind:?}");
        assert_eq!(svg.matches("class=\"withheld\"").count(), 2, "{kind:?}");
        assert!(svg.contains("RTH, 2024-02: withheld by disclosure control"));
        assert!(svg.contains("<title id=\"c-title\">Admissions &lt;per&gt; trust</title>"));
        assert!(svg.contains("4 values drawn, 2 withheld"));
    }
}
