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
    let plan = LogicalPlanBuilder::from(CapRecords::plan(scan, col("person"), records))
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
    let plan = LogicalPlanBuilder::from(CapRecords::plan(scan, col("person"), 2))
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
