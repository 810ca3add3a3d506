//! Where micro-batches go. A sink receives Arrow record batches of one topic and knows nothing
//! of Kafka; the consume engine decides what goes in a batch and when it counts as done.

mod console;
mod parquet;

pub use console::ConsoleSink;
pub use parquet::ParquetSink;

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
}

/// One topic's output. Calls come in order: `begin`, any number of `write`, `commit`.
pub trait Sink: Send {
    /// Starts micro-batch `batch`. The same batch may start again after a crash (a replay):
    /// the sink then first removes whatever the earlier attempt left, so the replay replaces
    /// it instead of adding to it.
    fn begin(&mut self, batch: u64) -> Result<(), SinkError>;

    /// Writes some rows of the current batch.
    fn write(&mut self, rows: &RecordBatch) -> Result<(), SinkError>;

    /// Makes the batch durable and returns the names of what it wrote.
    fn commit(&mut self) -> Result<Vec<String>, SinkError>;
}
