//! The operator that bounds each person's records: its input is hash-partitioned by person, so
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

/// Passes on the rows of each value of `person` while its records stay within `records`: at
/// most `records` of them (no `cells`), or `Σ c_i² ≤ records²` over the rows' cells.
#[derive(Debug, Clone)]
pub struct CapRecordsExec {
    input: Arc<dyn ExecutionPlan>,
    person: Arc<dyn PhysicalExpr>,
    cells: Vec<Arc<dyn PhysicalExpr>>,
    records: u64,
    properties: Arc<PlanProperties>,
}

impl CapRecordsExec {
    /// Bounds `input`'s rows of each `person` to `records`, over `cells` (see the type).
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        person: Arc<dyn PhysicalExpr>,
        cells: Vec<Arc<dyn PhysicalExpr>>,
        records: u64,
    ) -> Self {
        let properties = Arc::new(PlanProperties::clone(input.properties()));
        CapRecordsExec {
            input,
            person,
            cells,
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
        let norm = if self.cells.is_empty() {
            "records"
        } else {
            "‖records over cells‖₂"
        };
        write!(
            f,
            "CapRecordsPerPersonExec: {norm} of {} ≤ {}",
            self.person, self.records
        )
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
        for expr in std::iter::once(&self.person).chain(&self.cells) {
            if f(expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
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
            ChildrenPropertiesMode::Recompute => {
                CapRecordsExec::new(input, self.person.clone(), self.cells.clone(), self.records)
            }
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
        let sort_field = |e: &Arc<dyn PhysicalExpr>| e.data_type(&schema).map(SortField::new);
        let people = RowConverter::new(vec![sort_field(&self.person)?])?;
        let cells = match self.cells.is_empty() {
            true => None,
            false => {
                let fields = std::iter::once(&self.person)
                    .chain(&self.cells)
                    .map(sort_field)
                    .collect::<Result<Vec<_>>>()?;
                Some(RowConverter::new(fields)?)
            }
        };
        let mut counter = Counter {
            person: self.person.clone(),
            cells: self.cells.clone(),
            // Σ c_i² ≤ k² over cells; Σ c_i ≤ k without.
            limit: match cells {
                Some(_) => self.records.saturating_mul(self.records),
                None => self.records,
            },
            people,
            people_in_cells: cells,
            totals: HashMap::new(),
            in_cell: HashMap::new(),
            reservation: MemoryConsumer::new(format!("CapRecordsPerPerson[{partition}]"))
                .register(context.memory_pool()),
        };
        let input = self.input.execute(partition, context)?;
        let capped = input.map(move |batch| counter.cap(batch?));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, capped)))
    }
}

/// One partition's count of rows passed on, by person (and by person and cell).
struct Counter {
    person: Arc<dyn PhysicalExpr>,
    cells: Vec<Arc<dyn PhysicalExpr>>,
    /// The most a person's total may reach.
    limit: u64,
    /// Encode a person's value (and with its cell's), of whatever types, as bytes to count by.
    people: RowConverter,
    people_in_cells: Option<RowConverter>,
    /// By person: rows passed on, or with cells, Σ c_i² of them.
    totals: HashMap<Box<[u8]>, u64>,
    /// By person and cell: rows passed on (with cells only).
    in_cell: HashMap<Box<[u8]>, u64>,
    /// The memory the counts hold, from the query's pool (a query over its limit fails).
    reservation: MemoryReservation,
}

/// Bytes an entry holds besides its key (the count, the box, the table's slack).
const ENTRY_OVERHEAD: usize = 48;

/// The count of `key` in `map`, and the bytes a new entry would take (0 if it is there).
fn count_of(map: &HashMap<Box<[u8]>, u64>, key: &[u8]) -> (u64, usize) {
    match map.get(key) {
        Some(n) => (*n, 0),
        None => (0, key.len() + ENTRY_OVERHEAD),
    }
}

/// Sets `key`'s count in `map` (a key is copied only when new).
fn set(map: &mut HashMap<Box<[u8]>, u64>, key: &[u8], value: u64) {
    match map.get_mut(key) {
        Some(n) => *n = value,
        None => {
            map.insert(key.into(), value);
        }
    }
}

impl Counter {
    /// `batch` without the rows past each person's bound.
    fn cap(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let people = self.person.evaluate(&batch)?.into_array(rows)?;
        let people_rows = self.people.convert_columns(std::slice::from_ref(&people))?;
        let cell_rows = match &self.people_in_cells {
            None => None,
            Some(converter) => {
                let mut columns = vec![people];
                for cell in &self.cells {
                    columns.push(cell.evaluate(&batch)?.into_array(rows)?);
                }
                Some(converter.convert_columns(&columns)?)
            }
        };
        let mut keep = Vec::with_capacity(rows);
        let mut grown = 0;
        for row in 0..rows {
            let person = people_rows.row(row);
            let (total, new_person) = count_of(&self.totals, person.as_ref());
            // What the person's total becomes with this row: one more record, or (c + 1)² − c²
            // more when its cell already holds c of theirs.
            let (in_cell, new_cell, cell) = match &cell_rows {
                None => (0, 0, None),
                Some(cells) => {
                    let cell = cells.row(row);
                    let (n, bytes) = count_of(&self.in_cell, cell.as_ref());
                    (n, bytes, Some(cell))
                }
            };
            let after = total.saturating_add(2 * in_cell + 1);
            let kept = after <= self.limit;
            if kept {
                grown += new_person + new_cell;
                set(&mut self.totals, person.as_ref(), after);
                if let Some(cell) = cell {
                    set(&mut self.in_cell, cell.as_ref(), in_cell + 1);
                }
            }
            keep.push(kept);
        }
        self.reservation.try_grow(grown)?;
        if keep.iter().all(|k| *k) {
            return Ok(batch);
        }
        Ok(filter_record_batch(&batch, &BooleanArray::from(keep))?)
    }
}
