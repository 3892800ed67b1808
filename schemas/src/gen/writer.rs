//! Writes record batches to a Parquet file with fixed, reproducible settings.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::GenError;

/// Rows per generated batch; bounds the generator's memory.
pub const BATCH_ROWS: usize = 64 * 1024;

/// A Parquet file being written; counts its rows.
pub struct ParquetSink {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<BufWriter<File>>,
    rows: u64,
}

impl ParquetSink {
    /// Creates `path` for batches of `schema`.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<ParquetSink, GenError> {
        let file = File::create(path).map_err(|e| GenError::io(path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(256 * 1024))
            // A fixed writer name keeps files byte-identical across Tessera builds.
            .set_created_by("tessera gen".to_string())
            .build();
        let writer = ArrowWriter::try_new(BufWriter::new(file), schema.clone(), Some(props))
            .map_err(|e| GenError::parquet(path, e))?;
        Ok(ParquetSink {
            path: path.to_path_buf(),
            schema,
            writer,
            rows: 0,
        })
    }

    /// Appends one batch made of `columns` (in schema order).
    pub fn write(&mut self, columns: Vec<ArrayRef>) -> Result<(), GenError> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| GenError::Arrow(e.to_string()))?;
        self.rows += batch.num_rows() as u64;
        self.writer.write(&batch).map_err(|e| GenError::parquet(&self.path, e))
    }

    /// Finishes the file and returns its row count.
    pub fn finish(self) -> Result<u64, GenError> {
        self.writer.close().map_err(|e| GenError::parquet(&self.path, e))?;
        Ok(self.rows)
    }
}
