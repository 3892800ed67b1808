//! Step 7: the result a researcher sees — the protected batches, what disclosure control did,
//! and which trusts answered ([`provenance`]), also as schema metadata so the lines travel with
//! the data (Arrow and Parquet files, Flight).

pub mod provenance;

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{collect, ExecutionPlan};
use tessera_disclosure::{DisclosureConfig, Ledger, ReleaseLog};
use tessera_protocol::names::{DISCLOSURE_METADATA, PROVENANCE_METADATA};

use crate::error::QueryError;
use crate::fanout::federated_scans;
use crate::fanout::NodeOutcome;
use crate::protect::releases::record_release;
use provenance::Provenance;

/// A finished federated query.
#[derive(Debug, Clone)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// Which trusts answered.
    pub provenance: Provenance,
    /// What disclosure control did, e.g. `2 cells suppressed: 2 (threshold 10); counts rounded to 5`.
    pub disclosure: String,
    pub elapsed: Duration,
}

impl QueryResult {
    /// Rows across all batches.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A planned query, ready to run; its trusts' progress can be watched while it runs.
pub struct PreparedQuery {
    pub(crate) physical: Arc<dyn ExecutionPlan>,
    pub(crate) task: Arc<TaskContext>,
    pub(crate) started: Instant,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) disclosure: DisclosureConfig,
    /// Where a result about people is logged before it is returned.
    pub(crate) log: Option<ReleaseLog>,
    pub(crate) sql: String,
}

impl PreparedQuery {
    /// The answer's columns (without the provenance and disclosure metadata the result adds).
    pub fn schema(&self) -> SchemaRef {
        crate::noise::unmarked(&self.physical.schema())
    }

    /// A handle for watching each trust while the query runs.
    pub fn watch(&self) -> QueryWatch {
        QueryWatch {
            physical: self.physical.clone(),
        }
    }

    /// Asks every trust, merges, and reports who answered. Dropping the future cancels the fragments.
    pub async fn run(self) -> Result<QueryResult, QueryError> {
        if self.disclosure.is_dp() {
            crate::fanout::reserve_everywhere(&self.physical).await?;
        }
        let batches = collect(self.physical.clone(), self.task).await;
        let provenance = Provenance::of(&self.physical);
        let batches = batches?;
        if let Some(log) = &self.log {
            record_release(log, &self.sql, &self.physical, provenance.failure(), &self.ledger)?;
        }
        let mut disclosure = self.ledger.summary(&self.disclosure);
        // Each noisy value's merged noise, from what the trusts stated.
        let (schema, noise) = crate::noise::resolve(&self.physical.schema(), &provenance.noise);
        if let Some(line) = noise {
            disclosure = format!("{disclosure}; {line}");
        }
        let mut metadata = schema.metadata().clone();
        metadata.insert(DISCLOSURE_METADATA.to_string(), disclosure.clone());
        metadata.insert(PROVENANCE_METADATA.to_string(), provenance.summary());
        let schema = Arc::new(schema.as_ref().clone().with_metadata(metadata));
        let batches = batches
            .into_iter()
            .map(|b| {
                let rows = RecordBatchOptions::new().with_row_count(Some(b.num_rows()));
                RecordBatch::try_new_with_options(schema.clone(), b.columns().to_vec(), &rows)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataFusionError::from)?;
        Ok(QueryResult {
            schema,
            batches,
            provenance,
            disclosure,
            elapsed: self.started.elapsed(),
        })
    }
}

/// Each trust's state during a query: `None` while it is still working.
#[derive(Clone)]
pub struct QueryWatch {
    physical: Arc<dyn ExecutionPlan>,
}

impl QueryWatch {
    /// Per trust: `None` while any of its fragments is running, else how the last one ended.
    pub fn states(&self) -> Vec<(String, Option<NodeOutcome>)> {
        let mut states: Vec<(String, Option<NodeOutcome>)> = Vec::new();
        for scan in federated_scans(&self.physical) {
            for (trust, outcome) in scan.outcomes() {
                match states.iter_mut().find(|(t, _)| *t == trust) {
                    Some(slot) if slot.1.is_some() => slot.1 = outcome,
                    Some(_) => {}
                    None => states.push((trust, outcome)),
                }
            }
        }
        states
    }
}
