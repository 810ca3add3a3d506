//! Where micro-batches go. A sink receives Arrow record batches of one topic and knows nothing
//! of Kafka; the consume engine decides what goes in a batch and when it counts as done.

mod console;
pub mod day;
mod delta;
mod parquet;

pub use console::ConsoleSink;
pub use delta::{DeltaSink, DeltaSinkOptions};
pub(crate) use parquet::parse_name;
pub use parquet::{ParquetSink, writer_properties};

use std::collections::BTreeMap;
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
    #[error(transparent)]
    Lake(#[from] crate::lake::LakeError),
    #[error(
        "Delta table {table}: partition {partition} was written by another consumer (the table says its next offset is {found}, this consumer expected {expected}); run one consumer per partition (--instance I/N gives each its own), then run again: this consumer continues from the table"
    )]
    Taken {
        table: String,
        partition: i32,
        found: String,
        expected: String,
    },
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

impl SinkError {
    /// Whether a retry of the batch may succeed: a full disk freed, a store back. Another
    /// writer on our partitions is not cured by trying again.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Io { .. } | Self::Encode { .. } => true,
            Self::Lake(error) => error.is_retriable(),
            Self::Taken { .. }
            | Self::NoDayColumn { .. }
            | Self::DateColumnTaken { .. }
            | Self::TooManyRows { .. }
            | Self::Arrow { .. } => false,
        }
    }
}

/// Where a sink that keeps its own offsets left off (the Delta sink's table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkCheckpoint {
    /// The number of this consumer's next batch.
    pub next_batch: u64,
    /// The next offset to read of each partition the sink holds records of.
    pub next_offsets: BTreeMap<i32, i64>,
}

/// A batch that is complete and about to be committed.
#[derive(Debug, Clone, Copy)]
pub struct BatchDone<'a> {
    pub batch: u64,
    /// The next offset to read of every owned partition once this batch counts.
    pub next_offsets: &'a BTreeMap<i32, i64>,
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

    /// Makes the batch durable and returns the names of what it wrote. A sink that is its own
    /// checkpoint records `done.next_offsets` in the same step.
    fn commit(&mut self, done: BatchDone<'_>) -> Result<Vec<String>, SinkError>;

    /// For a sink that keeps its own offsets: where the last committed batch left off, or
    /// `None` when nothing was committed yet. Sinks with a separate checkpoint return `None`.
    fn checkpoint(&mut self) -> Result<Option<SinkCheckpoint>, SinkError> {
        Ok(None)
    }
}
