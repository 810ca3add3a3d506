//! The console sink, like Spark's: a `Batch: N` header, then the first rows as a table.

use std::sync::Arc;

use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::pretty::pretty_format_batches;

use super::{BatchDone, ExistingFile, Sink, SinkError};

pub struct ConsoleSink {
    topic: String,
    max_rows: usize,
    batch: u64,
    shown: Vec<RecordBatch>,
    rows: usize,
}

impl ConsoleSink {
    pub fn new(topic: &str, max_rows: usize) -> Self {
        Self {
            topic: topic.to_string(),
            max_rows,
            batch: 0,
            shown: Vec::new(),
            rows: 0,
        }
    }
}

impl Sink for ConsoleSink {
    /// A terminal keeps nothing to collide with.
    fn existing(&self) -> Result<Vec<ExistingFile>, SinkError> {
        Ok(Vec::new())
    }

    fn remove(&mut self, _files: &[ExistingFile]) -> Result<(), SinkError> {
        Ok(())
    }

    fn begin(&mut self, batch: u64) -> Result<(), SinkError> {
        self.batch = batch;
        self.shown.clear();
        self.rows = 0;
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<(), SinkError> {
        let room = self
            .max_rows
            .saturating_sub(self.shown.iter().map(RecordBatch::num_rows).sum());
        if room > 0 {
            self.shown
                .push(displayable(&rows.slice(0, room.min(rows.num_rows()))));
        }
        self.rows += rows.num_rows();
        Ok(())
    }

    fn commit(&mut self, _done: BatchDone<'_>) -> Result<Vec<String>, SinkError> {
        let rule = "-------------------------------------------";
        let table = pretty_format_batches(&self.shown)
            .map(|t| t.to_string())
            .unwrap_or_else(|e| format!("(cannot show rows: {e})"));
        let more = if self.rows > self.max_rows {
            format!("only showing top {} of {} rows\n", self.max_rows, self.rows)
        } else {
            String::new()
        };
        // One print call, so concurrent topics do not interleave their tables.
        println!(
            "{rule}\nBatch: {} ({})\n{rule}\n{table}\n{more}",
            self.batch, self.topic
        );
        Ok(Vec::new())
    }
}

/// Timestamps in "UTC" as "+00:00": the same instant, but printable without bundling the time
/// zone database (arrow's display only knows offset zones without it).
fn displayable(rows: &RecordBatch) -> RecordBatch {
    let utc = |dt: &DataType| match dt {
        DataType::Timestamp(unit, Some(_)) => {
            Some(DataType::Timestamp(*unit, Some("+00:00".into())))
        }
        _ => None,
    };
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for (field, column) in rows.schema().fields().iter().zip(rows.columns()) {
        match utc(field.data_type()) {
            Some(dt) => {
                columns.push(cast(column, &dt).unwrap_or_else(|_| Arc::clone(column)));
                fields.push(Field::new(
                    field.name(),
                    columns.last().unwrap().data_type().clone(),
                    true,
                ));
            }
            None => {
                columns.push(Arc::clone(column));
                fields.push(field.as_ref().clone());
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|_| rows.clone())
}
