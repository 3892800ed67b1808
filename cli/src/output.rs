//! Writing query results: table, CSV, TSV, JSON, NDJSON, Arrow IPC or Parquet.

use std::io::Write;

use clap::ValueEnum;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::util::pretty::pretty_format_batches;

/// How results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// A text table for people (the default).
    #[default]
    Table,
    Csv,
    Tsv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
    /// Arrow IPC file.
    Arrow,
    Parquet,
}

impl Format {
    /// Binary formats must go to a file, not a terminal.
    pub fn is_binary(self) -> bool {
        matches!(self, Format::Arrow | Format::Parquet)
    }
}

/// Writes `batches` to `out` in `format`.
pub fn write(format: Format, schema: &SchemaRef, batches: &[RecordBatch], out: &mut dyn Write) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("cannot write the result: {e}");
    match format {
        Format::Table => {
            let table = pretty_format_batches(batches).map_err(|e| err(&e))?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if batches.is_empty() {
                let header = schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(" | ");
                writeln!(out, "{header}").map_err(|e| err(&e))?;
            } else {
                writeln!(out, "{table}").map_err(|e| err(&e))?;
            }
            writeln!(out, "({rows} row{})", if rows == 1 { "" } else { "s" }).map_err(|e| err(&e))
        }
        Format::Csv | Format::Tsv => {
            let delimiter = if format == Format::Csv { b',' } else { b'\t' };
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .with_delimiter(delimiter)
                .build(out);
            if batches.is_empty() {
                writer
                    .write(&RecordBatch::new_empty(schema.clone()))
                    .map_err(|e| err(&e))?;
            }
            for batch in batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
            Ok(())
        }
        Format::Json => {
            let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
            writer.finish().map_err(|e| err(&e))?;
            if batches.iter().all(|b| b.num_rows() == 0) {
                write!(out, "[]").map_err(|e| err(&e))?;
            }
            writeln!(out).map_err(|e| err(&e))
        }
        Format::Ndjson => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
            writer.finish().map_err(|e| err(&e))
        }
        Format::Arrow => {
            let mut writer = datafusion::arrow::ipc::writer::FileWriter::try_new(out, schema).map_err(|e| err(&e))?;
            for batch in batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
            writer.finish().map_err(|e| err(&e))
        }
        Format::Parquet => {
            let mut buffer = Vec::new();
            let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(&mut buffer, schema.clone(), None)
                .map_err(|e| err(&e))?;
            for batch in batches {
                writer.write(batch).map_err(|e| err(&e))?;
            }
            writer.close().map_err(|e| err(&e))?;
            out.write_all(&buffer).map_err(|e| err(&e))
        }
    }
}
