//! What a trust says beside its answer, in the answer's metadata: the as-at date of its data,
//! what a private answer cost, and the noise in each column. Every value is a node's bytes:
//! anything malformed is ignored, never shown.

use std::collections::BTreeMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use tessera_protocol::names::{AS_AT_METADATA, PRIVACY_METADATA};
use tessera_protocol::PrivacyNote;

use crate::noise::Noise;

/// The notes of one trust's answer, from its first batch that carries each.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// The as-at date of the trust's data (`YYYY-MM-DD`).
    pub as_at: Option<String>,
    /// What the answer cost, when the trust answered with differential privacy.
    pub privacy: Option<PrivacyNote>,
    /// Per column of the expected schema: the noise the trust stated.
    pub noise: BTreeMap<String, Noise>,
}

impl Notes {
    /// Adds what `batch` says and its notes do not have yet; `expected` names its columns.
    pub fn read(mut self, batch: &RecordBatch, expected: &SchemaRef) -> Notes {
        let metadata = batch.schema_ref().metadata();
        if self.as_at.is_none() {
            self.as_at = metadata
                .get(AS_AT_METADATA)
                .filter(|text| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok())
                .cloned();
        }
        if self.privacy.is_none() {
            self.privacy = metadata
                .get(PRIVACY_METADATA)
                .and_then(|text| PrivacyNote::decode(text));
        }
        if self.noise.is_empty() {
            // By position, as the batch is conformed: a node's own column names are not trusted.
            self.noise = batch
                .schema_ref()
                .fields()
                .iter()
                .zip(expected.fields())
                .filter_map(|(sent, wanted)| Some((wanted.name().clone(), Noise::of(sent)?)))
                .collect();
        }
        self
    }
}
