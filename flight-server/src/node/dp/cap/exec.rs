//! The operator that caps each person's records: its input is hash-partitioned by person, so
//! each partition sees all the rows of its people and counts them alone, with no sort and no
//! lock.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, HashMap, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PartitioningSatisfaction;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, PhysicalExpr, PlanProperties, ReplaceChildrenOptions, SendableRecordBatchStream,
};
use futures::StreamExt;

/// Passes on at most `records` rows of each value of `person`.
#[derive(Debug, Clone)]
pub struct CapRecordsExec {
    input: Arc<dyn ExecutionPlan>,
    person: Arc<dyn PhysicalExpr>,
    records: u64,
    properties: Arc<PlanProperties>,
}

impl CapRecordsExec {
    /// Caps `input`'s rows at `records` for each `person`.
    pub fn new(input: Arc<dyn ExecutionPlan>, person: Arc<dyn PhysicalExpr>, records: u64) -> Self {
        let properties = Arc::new(PlanProperties::clone(input.properties()));
        CapRecordsExec {
            input,
            person,
            records,
            properties,
        }
    }

    /// Whether each partition of the input holds all the rows of its people (one partition
    /// does). Checked before running: a person counted in two partitions could pass twice.
    fn input_partitioned_by_person(&self) -> bool {
        let satisfaction =
            self.input
                .output_partitioning()
                .satisfaction(&self.required(), self.input.equivalence_properties(), false);
        satisfaction == PartitioningSatisfaction::Exact
    }

    /// Every row of a person in one partition.
    fn required(&self) -> Distribution {
        Distribution::KeyPartitioned(vec![self.person.clone()])
    }
}

impl DisplayAs for CapRecordsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CapRecordsPerPersonExec: {} ≤ {}", self.person, self.records)
    }
}

impl ExecutionPlan for CapRecordsExec {
    fn name(&self) -> &str {
        "CapRecordsPerPersonExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        InputDistributionRequirements::new(vec![self.required()])
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        f(&self.person)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("CapRecordsPerPersonExec has one input");
        };
        Ok(Arc::new(match options.children_properties {
            ChildrenPropertiesMode::Keep => CapRecordsExec {
                input,
                ..CapRecordsExec::clone(&self)
            },
            ChildrenPropertiesMode::Recompute => CapRecordsExec::new(input, self.person.clone(), self.records),
        }))
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute))
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::LowerEqual
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        if !self.input_partitioned_by_person() {
            return internal_err!(
                "cannot cap each person's records: the rows are not partitioned by person ({})",
                self.input.output_partitioning()
            );
        }
        let schema = self.input.schema();
        let kind = self.person.data_type(&schema)?;
        let mut counter = Counter {
            person: self.person.clone(),
            records: self.records,
            rows: RowConverter::new(vec![SortField::new(kind)])?,
            seen: HashMap::new(),
            reservation: MemoryConsumer::new(format!("CapRecordsPerPerson[{partition}]"))
                .register(context.memory_pool()),
        };
        let input = self.input.execute(partition, context)?;
        let capped = input.map(move |batch| counter.cap(batch?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, capped)))
    }
}

/// One partition's count of rows passed on, by person.
struct Counter {
    person: Arc<dyn PhysicalExpr>,
    records: u64,
    /// Encodes a person's value, of whatever type, as bytes to count by.
    rows: RowConverter,
    seen: HashMap<Box<[u8]>, u64>,
    /// The memory the counts hold, from the query's pool (a query over its limit fails).
    reservation: MemoryReservation,
}

/// Bytes a person's entry holds besides its key (the count, the box, the table's slack).
const ENTRY_OVERHEAD: usize = 48;

impl Counter {
    /// `batch` without the rows past each person's cap.
    fn cap(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let people = self.person.evaluate(&batch)?.into_array(batch.num_rows())?;
        let rows = self.rows.convert_columns(&[people])?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut grown = 0;
        for row in rows.iter() {
            let key = row.as_ref();
            let kept = match self.seen.get_mut(key) {
                Some(n) if *n >= self.records => false,
                Some(n) => {
                    *n += 1;
                    true
                }
                None => {
                    grown += key.len() + ENTRY_OVERHEAD;
                    self.seen.insert(key.into(), 1);
                    self.records > 0
                }
            };
            keep.push(kept);
        }
        self.reservation.try_grow(grown)?;
        if keep.iter().all(|k| *k) {
            return Ok(batch);
        }
        Ok(filter_record_batch(&batch, &BooleanArray::from(keep))?)
    }
}
