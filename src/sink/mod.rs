//! Where micro-batches go. A sink receives Arrow record batches of one topic and knows nothing
//! of Kafka; the consume engine decides what goes in a batch and when it counts as done.

mod console;
pub mod day;
mod parquet;

pub use console::ConsoleSink;
pub use parquet::ParquetSink;

use std::path::PathBuf;

use arrow::record_batch::RecordBatch;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot encode Parquet for {path}: {reason}")]
    Encode { path: String, reason: String },
    #[error(
        "cannot partition by day on column `{column}`: {found}; partition_by_day must name a \
         timestamp column of the topic's schema"
    )]
    NoDayColumn { column: String, found: String },
    #[error(
        "the rows already have a `{column}` column, the name of the day partition: rename it in \
         the topic's schema, or remove partition_by_day"
    )]
    DateColumnTaken { column: &'static str },
    #[error("{rows} rows in one batch are too many to split by day (at most 2^32)")]
    TooManyRows { rows: usize },
    #[error("Arrow failed {what}: {source}")]
    Arrow {
        what: &'static str,
        #[source]
        source: arrow::error::ArrowError,
    },
}

/// A data file an earlier run left in a sink's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingFile {
    pub path: PathBuf,
    /// The micro-batch that wrote it.
    pub batch: u64,
    /// Written by a consumer of the same identity (the same checkpoint); otherwise by one
    /// whose partitions overlap this one's (one of the two consumed all partitions).
    pub own: bool,
}

/// One topic's output. Calls come in order: `begin`, any number of `write`, `commit`.
pub trait Sink: Send {
    /// The data files already in the output that this sink's records could collide with,
    /// so the consumer can check them against its checkpoint before writing anything.
    fn existing(&self) -> Result<Vec<ExistingFile>, SinkError>;

    /// Deletes files [`Sink::existing`] returned (`--overwrite`).
    fn remove(&mut self, files: &[ExistingFile]) -> Result<(), SinkError>;

    /// Starts micro-batch `batch`. The same batch may start again after a crash (a replay):
    /// the sink then first removes whatever the earlier attempt left, so the replay replaces
    /// it instead of adding to it. The consumer calls it only for batches its checkpoint has
    /// not committed, after checking the output holds no later ones.
    fn begin(&mut self, batch: u64) -> Result<(), SinkError>;

    /// Writes some rows of the current batch.
    fn write(&mut self, rows: &RecordBatch) -> Result<(), SinkError>;

    /// Makes the batch durable and returns the names of what it wrote.
    fn commit(&mut self) -> Result<Vec<String>, SinkError>;
}
