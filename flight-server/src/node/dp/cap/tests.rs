use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{col, LogicalPlanBuilder};
use datafusion::physical_plan::{collect, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};

use super::{with_cap_planner, CapRecords};

/// Person `p{i}` has `i` records, spread over `partitions` partitions in turn, and a value.
fn table(people: usize, partitions: usize) -> MemTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("person", DataType::Utf8, true),
        Field::new("value", DataType::Int64, false),
    ]));
    let mut parts = vec![(Vec::new(), Vec::new()); partitions];
    let mut n = 0;
    for person in 1..=people {
        for record in 0..person {
            let (ids, values) = &mut parts[n % partitions];
            // Person 0 stands for a missing id: NULLs are one person, capped too.
            ids.push((person > 1).then(|| format!("p{person}")));
            values.push(record as i64);
            n += 1;
        }
    }
    let batches = parts
        .into_iter()
        .map(|(ids, values)| {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(ids)), Arc::new(Int64Array::from(values))],
            )
            .unwrap();
            vec![batch]
        })
        .collect();
    MemTable::try_new(schema, batches).unwrap()
}

/// Records per person after the cap, by person, and the physical plan that made them.
async fn capped(people: usize, partitions: usize, targets: usize, records: u64) -> (Vec<(String, i64)>, String) {
    let config = SessionConfig::new().with_target_partitions(targets);
    let ctx = with_cap_planner(SessionContext::new_with_config(config));
    ctx.register_table("t", Arc::new(table(people, partitions))).unwrap();
    let scan = ctx.table("t").await.unwrap().into_unoptimized_plan();
    let plan = LogicalPlanBuilder::from(CapRecords::plan(scan, col("person"), Vec::new(), records))
        .aggregate(
            vec![col("person")],
            vec![datafusion::functions_aggregate::expr_fn::count(col("value")).alias("n")],
        )
        .unwrap()
        .build()
        .unwrap();
    let state = ctx.state();
    let physical = state.create_physical_plan(&plan).await.unwrap();
    let shown = displayable(physical.as_ref()).indent(false).to_string();
    let batches = collect(physical, ctx.task_ctx()).await.unwrap();
    let mut counts = Vec::new();
    for batch in &batches {
        let ids = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let n = batch.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..batch.num_rows() {
            let id = if ids.is_null(i) {
                "NULL".to_string()
            } else {
                ids.value(i).to_string()
            };
            counts.push((id, n.value(i)));
        }
    }
    counts.sort();
    (counts, shown)
}

#[tokio::test]
async fn each_person_keeps_at_most_the_cap_whatever_the_partitions() {
    // (people, input partitions, target partitions, cap)
    let cases = [
        (30, 1, 1, 1),
        (30, 4, 1, 3),
        (30, 4, 2, 3),
        (30, 3, 4, 10),
        (12, 5, 3, 100),
    ];
    for (people, partitions, targets, records) in cases {
        let (counts, shown) = capped(people, partitions, targets, records).await;
        let mut expected = (1..=people)
            .map(|p| {
                let id = if p > 1 { format!("p{p}") } else { "NULL".to_string() };
                (id, (p as i64).min(records as i64))
            })
            .collect::<Vec<_>>();
        expected.sort();
        assert_eq!(
            counts, expected,
            "{people} people in {partitions} partitions, {targets} targets, cap {records}:\n{shown}"
        );
        assert!(shown.contains("CapRecordsPerPersonExec"), "{shown}");
        assert!(!shown.contains("Sort"), "the cap needs no sort:\n{shown}");
    }
}

#[tokio::test]
async fn only_the_columns_asked_for_are_read() {
    let config = SessionConfig::new().with_target_partitions(1);
    let ctx = with_cap_planner(SessionContext::new_with_config(config));
    ctx.register_table("t", Arc::new(table(5, 1))).unwrap();
    let scan = ctx.table("t").await.unwrap().into_unoptimized_plan();
    let plan = LogicalPlanBuilder::from(CapRecords::plan(scan, col("person"), Vec::new(), 2))
        .aggregate(
            Vec::<datafusion::logical_expr::Expr>::new(),
            vec![datafusion::functions_aggregate::expr_fn::count(datafusion::logical_expr::lit(1)).alias("n")],
        )
        .unwrap()
        .build()
        .unwrap();
    let optimized = ctx.state().optimize(&plan).unwrap();
    let shown = optimized.display_indent().to_string();
    assert!(
        shown.contains("projection=[person]"),
        "the scan reads the person only:\n{shown}"
    );
    let batches = collect(ctx.state().create_physical_plan(&plan).await.unwrap(), ctx.task_ctx())
        .await
        .unwrap();
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    // 1 NULL + p2 2 + p3..p5 capped at 2.
    assert_eq!(n, 1 + 2 * 4);
}

/// Rows `(person, cell)` in one table of `partitions` partitions, dealt in turn.
fn cells_table(rows: &[(&str, &str)], partitions: usize) -> MemTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("person", DataType::Utf8, false),
        Field::new("cell", DataType::Utf8, false),
    ]));
    let batches = (0..partitions)
        .map(|p| {
            let mine = rows.iter().skip(p).step_by(partitions);
            let people = StringArray::from(mine.clone().map(|r| r.0).collect::<Vec<_>>());
            let cells = StringArray::from(mine.map(|r| r.1).collect::<Vec<_>>());
            vec![RecordBatch::try_new(schema.clone(), vec![Arc::new(people), Arc::new(cells)]).unwrap()]
        })
        .collect();
    MemTable::try_new(schema, batches).unwrap()
}

/// Rows kept of each (person, cell), bounded in L2 norm over `cell`.
async fn kept_by_cell(rows: &[(&str, &str)], partitions: usize, targets: usize, records: u64) -> Vec<(String, i64)> {
    let config = SessionConfig::new().with_target_partitions(targets);
    let ctx = with_cap_planner(SessionContext::new_with_config(config));
    ctx.register_table("t", Arc::new(cells_table(rows, partitions)))
        .unwrap();
    let scan = ctx.table("t").await.unwrap().into_unoptimized_plan();
    let plan = LogicalPlanBuilder::from(CapRecords::plan(scan, col("person"), vec![col("cell")], records))
        .aggregate(
            vec![col("person"), col("cell")],
            vec![datafusion::functions_aggregate::expr_fn::count(datafusion::logical_expr::lit(1)).alias("n")],
        )
        .unwrap()
        .build()
        .unwrap();
    let physical = ctx.state().create_physical_plan(&plan).await.unwrap();
    let mut kept = Vec::new();
    for batch in collect(physical, ctx.task_ctx()).await.unwrap() {
        let text = |i: usize| batch.column(i).as_any().downcast_ref::<StringArray>().unwrap().clone();
        let (people, cells) = (text(0), text(1));
        let n = batch.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..batch.num_rows() {
            kept.push((format!("{}/{}", people.value(i), cells.value(i)), n.value(i)));
        }
    }
    kept.sort();
    kept
}

/// Rows `(person, cell)` in arrival order, the cap k, and the rows kept per `person/cell`.
type L2Case = (
    &'static [(&'static str, &'static str)],
    u64,
    &'static [(&'static str, i64)],
);

#[tokio::test]
async fn over_cells_a_person_keeps_rows_while_the_sum_of_squares_stays_within_the_bound() {
    // (rows in arrival order, cap k, kept per person/cell): Σ c² ≤ k², greedily.
    let cases: [L2Case; 4] = [
        // One record in each of k² = 4 cells: all kept (a count cap of 2 would keep 2).
        (
            &[("a", "1"), ("a", "2"), ("a", "3"), ("a", "4")],
            2,
            &[("a/1", 1), ("a/2", 1), ("a/3", 1), ("a/4", 1)],
        ),
        // All in one cell: k of them.
        (&[("a", "1"), ("a", "1"), ("a", "1"), ("a", "1")], 2, &[("a/1", 2)]),
        // 1 + 1 + 1 = 3, a second in cell 1 would make 1 + 1 + 4 = 6 > 4; a fourth cell fits.
        (
            &[("a", "1"), ("a", "2"), ("a", "3"), ("a", "1"), ("a", "4")],
            2,
            &[("a/1", 1), ("a/2", 1), ("a/3", 1), ("a/4", 1)],
        ),
        // People are bounded apart: b's rows do not count against a's.
        (
            &[("a", "1"), ("b", "1"), ("a", "1"), ("b", "2"), ("a", "1")],
            1,
            &[("a/1", 1), ("b/1", 1)],
        ),
    ];
    for (rows, records, expected) in cases {
        let kept = kept_by_cell(rows, 1, 1, records).await;
        let expected = expected.iter().map(|(k, n)| (k.to_string(), *n)).collect::<Vec<_>>();
        assert_eq!(kept, expected, "{rows:?} with k = {records}");
    }
}

#[tokio::test]
async fn over_cells_the_bound_holds_whatever_the_partitions() {
    // 40 people, person p with p records over (p mod 7) + 1 cells.
    let ids = (0..40).map(|p| format!("p{p}")).collect::<Vec<_>>();
    let cells = (0..7).map(|c| c.to_string()).collect::<Vec<_>>();
    let mut rows = Vec::new();
    for (p, id) in ids.iter().enumerate() {
        for r in 0..p {
            rows.push((id.as_str(), cells[r % (p % 7 + 1)].as_str()));
        }
    }
    for (partitions, targets, records) in [(1, 1, 3), (3, 2, 3), (4, 3, 5), (2, 4, 1)] {
        let kept = kept_by_cell(&rows, partitions, targets, records).await;
        for (p, id) in ids.iter().enumerate() {
            let mine = kept.iter().filter(|(k, _)| k.starts_with(&format!("{id}/")));
            let squares: i64 = mine.clone().map(|(_, n)| n * n).sum();
            assert!(
                squares <= (records * records) as i64,
                "{id}: Σc² = {squares}, k = {records}"
            );
            // Someone within the bound keeps every record.
            let spread = p % 7 + 1;
            let full: i64 = (0..spread)
                .map(|c| ((p + spread - 1 - c) / spread) as i64)
                .map(|n| n * n)
                .sum();
            if full <= (records * records) as i64 {
                assert_eq!(mine.map(|(_, n)| n).sum::<i64>(), p as i64, "{id} is within the bound");
            }
        }
    }
}

#[tokio::test]
async fn selecting_cells_counts_records_whatever_the_cells() {
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(cells_table(&[("a", "1")], 1)))
        .unwrap();
    let scan = ctx.table("t").await.unwrap().into_unoptimized_plan();
    let over_cells = CapRecords::plan(scan, col("person"), vec![col("cell")], 3);
    let shown = |plan: &datafusion::logical_expr::LogicalPlan| plan.display_indent().to_string();
    assert!(
        shown(&over_cells).contains("‖records of person over cells (cell)‖₂ ≤ 3"),
        "{}",
        shown(&over_cells)
    );
    let counted = super::count_records_only(over_cells).unwrap();
    assert!(
        shown(&counted).contains("CapRecordsPerPerson: records of person ≤ 3"),
        "{}",
        shown(&counted)
    );
}
