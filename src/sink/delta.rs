//! The Delta sink: a topic's records as a Delta table at `OUTPUT/TOPIC` (a directory or
//! `s3://`), one Delta commit per micro-batch. The commit holds the batch's data files and
//! the consumer's offsets as application transactions (`txn` actions):
//!
//! * `factorypal-partition-P`, version = the next offset to read of Kafka partition `P`;
//! * `factorypal-batch-IDENTITY`, version = the consumer's batch number (for logs and the
//!   names of `_bad_records/` files).
//!
//! So the table is its own checkpoint (kafka-delta-ingest's design): a batch is in the table
//! and its offsets are recorded in one atomic step, or neither. Data files written by an
//! attempt that never committed are in no version: no reader sees them, and `compact`'s
//! vacuum removes them later. On start the consumer continues from the table's `txn`
//! versions. Before committing, the sink checks that the table still holds the offsets it
//! last saw for its partitions; delta-rs' conflict check catches a writer that commits the
//! same partitions in between. Either way the batch fails instead of writing records twice.
//! Other instances' commits (other partitions) and `compact` do not conflict: delta-rs
//! retries the commit on the newer version.
//!
//! delta-rs is async; the sink runs on the topic's file thread and drives it with the
//! runtime's `Handle::block_on`, so Parquet encoding never runs on a runtime worker.

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, Transaction};
use deltalake::protocol::{DeltaOperation, OutputMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use parquet::file::properties::WriterProperties;
use tokio::runtime::Handle;

use super::{BatchDone, ExistingFile, Sink, SinkCheckpoint, SinkError};
use crate::lake::TableLocation;

/// Commits delta-rs tries again on a newer table version after losing a race with another
/// writer whose changes do not conflict (other instances' appends, `compact`). It retries
/// without a pause; past this the engine retries the batch with its own backoff.
const COMMIT_RETRIES: usize = 15;

pub struct DeltaSink {
    runtime: Handle,
    location: TableLocation,
    table: DeltaTable,
    /// The consumer's identity (`all`, `i0of2`, ...): names its batch counter.
    identity: String,
    /// The Kafka partitions this consumer owns.
    owned: Vec<i32>,
    /// `partition_by_day`: the timestamp column whose UTC day partitions the table.
    day_column: Option<String>,
    properties: WriterProperties,
    /// The next offsets the table held for our partitions after our last commit (or at start).
    committed: BTreeMap<i32, i64>,
    /// The current batch's data files, written but not committed.
    adds: Vec<Add>,
}

/// What a [`DeltaSink`] is opened with.
pub struct DeltaSinkOptions {
    pub identity: String,
    pub owned: Vec<i32>,
    pub day_column: Option<String>,
    pub properties: WriterProperties,
}

impl DeltaSink {
    /// Opens (or creates) the topic's table.
    pub fn new(
        runtime: Handle,
        location: TableLocation,
        table: DeltaTable,
        options: DeltaSinkOptions,
    ) -> Self {
        Self {
            runtime,
            location,
            table,
            identity: options.identity,
            owned: options.owned,
            day_column: options.day_column,
            properties: options.properties,
            committed: BTreeMap::new(),
            adds: Vec::new(),
        }
    }

    fn partition_app(partition: i32) -> String {
        format!("factorypal-partition-{partition}")
    }

    fn batch_app(&self) -> String {
        format!("factorypal-batch-{}", self.identity)
    }

    fn delta_error(&self, source: deltalake::DeltaTableError) -> SinkError {
        SinkError::Lake(self.location.error(source))
    }

    /// The table's newest version, and the `txn` versions of our partitions and batch counter.
    async fn table_offsets(&mut self) -> Result<TableOffsets, SinkError> {
        self.table
            .update_incremental(None)
            .await
            .map_err(|e| self.delta_error(e))?;
        let snapshot = self.table.snapshot().map_err(|e| self.delta_error(e))?;
        let log_store = self.table.log_store();
        let mut next_offsets = BTreeMap::new();
        for &p in &self.owned {
            let version = snapshot
                .transaction_version(log_store.as_ref(), Self::partition_app(p))
                .await
                .map_err(|e| self.delta_error(e))?;
            if let Some(offset) = version {
                next_offsets.insert(p, offset);
            }
        }
        let batch = snapshot
            .transaction_version(log_store.as_ref(), self.batch_app())
            .await
            .map_err(|e| self.delta_error(e))?;
        Ok(TableOffsets {
            next_offsets,
            batch,
        })
    }

    async fn write_file(&mut self, rows: RecordBatch) -> Result<(), SinkError> {
        let mut writer = RecordBatchWriter::for_table(&self.table)
            .map_err(|e| self.delta_error(e))?
            .with_writer_properties(self.properties.clone());
        writer.write(rows).await.map_err(|e| self.delta_error(e))?;
        let adds = writer.flush().await.map_err(|e| self.delta_error(e))?;
        self.adds.extend(adds);
        Ok(())
    }

    async fn commit_batch(&mut self, done: BatchDone<'_>) -> Result<Vec<String>, SinkError> {
        let found = self.table_offsets().await?;
        let ours: BTreeMap<i32, i64> = self
            .owned
            .iter()
            .map(|p| (*p, done.next_offsets[p]))
            .collect();
        let names: Vec<String> = self.adds.iter().map(|a| a.path.clone()).collect();
        if found.next_offsets == ours && found.batch == Some(done.batch as i64) {
            // An earlier attempt of this very batch committed and its answer was lost.
            tracing::info!(table = %self.location.display(), batch = done.batch, "batch was already committed by an earlier attempt");
            self.adds.clear();
            self.committed = ours;
            return Ok(Vec::new());
        }
        self.check_untaken(&found.next_offsets)?;
        let mut actions: Vec<Action> = std::mem::take(&mut self.adds)
            .into_iter()
            .map(Action::Add)
            .collect();
        for (p, next) in &ours {
            actions.push(Action::Txn(Transaction::new(
                Self::partition_app(*p),
                *next,
            )));
        }
        actions.push(Action::Txn(Transaction::new(
            self.batch_app(),
            done.batch as i64,
        )));
        let operation = DeltaOperation::StreamingUpdate {
            output_mode: OutputMode::Append,
            query_id: self.batch_app(),
            epoch_id: done.batch as i64,
        };
        let snapshot = self.table.snapshot().map_err(|e| self.delta_error(e))?;
        // A checkpoint every `delta.checkpointInterval` commits (100 by default) keeps opening
        // the table and finding our txn versions cheap. Expired log files are kept: delta-rs'
        // cleanup lists the whole log on every commit.
        let properties = CommitProperties::default()
            .with_max_retries(COMMIT_RETRIES)
            .with_create_checkpoint(true)
            .with_cleanup_expired_logs(Some(false));
        let landed = CommitBuilder::from(properties)
            .with_actions(actions)
            .build(Some(snapshot), self.table.log_store(), operation)
            .into_prepared_commit_future()
            .await
            .map_err(|e| self.delta_error(e))?
            .await
            .map_err(|e| self.delta_error(e))?;
        // The batch counts from here: what follows (the checkpoint) is upkeep, and its failure
        // must not make a committed batch look failed.
        let version = landed.version;
        self.committed = ours;
        if let Err(error) = landed.await {
            tracing::warn!(table = %self.location.display(), version, %error, "batch committed, but writing a Delta checkpoint failed; the next one is tried at the next checkpoint interval");
        }
        tracing::debug!(table = %self.location.display(), version, batch = done.batch, "Delta commit");
        Ok(names)
    }

    /// Our partitions must still be where our last commit (or the start) left them.
    fn check_untaken(&self, found: &BTreeMap<i32, i64>) -> Result<(), SinkError> {
        for &p in &self.owned {
            let (now, then) = (found.get(&p), self.committed.get(&p));
            if now != then {
                let show = |o: Option<&i64>| o.map_or("none".to_string(), i64::to_string);
                return Err(SinkError::Taken {
                    table: self.location.display(),
                    partition: p,
                    found: show(now),
                    expected: show(then),
                });
            }
        }
        Ok(())
    }
}

/// What the table records of this consumer.
struct TableOffsets {
    next_offsets: BTreeMap<i32, i64>,
    batch: Option<i64>,
}

impl Sink for DeltaSink {
    /// Nothing to reconcile: files no commit references are invisible to readers.
    fn existing(&self) -> Result<Vec<ExistingFile>, SinkError> {
        Ok(Vec::new())
    }

    fn remove(&mut self, _files: &[ExistingFile]) -> Result<(), SinkError> {
        Ok(())
    }

    /// A new attempt: files of an earlier attempt stay uncommitted (invisible; vacuum removes
    /// them).
    fn begin(&mut self, _batch: u64) -> Result<(), SinkError> {
        self.adds.clear();
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<(), SinkError> {
        let rows = match &self.day_column {
            Some(column) => super::day::with_date_column(rows, column)?,
            None => rows.clone(),
        };
        let runtime = self.runtime.clone();
        runtime.block_on(self.write_file(rows))
    }

    fn commit(&mut self, done: BatchDone<'_>) -> Result<Vec<String>, SinkError> {
        let runtime = self.runtime.clone();
        runtime.block_on(self.commit_batch(done))
    }

    fn checkpoint(&mut self) -> Result<Option<SinkCheckpoint>, SinkError> {
        let runtime = self.runtime.clone();
        let found = runtime.block_on(self.table_offsets())?;
        self.committed = found.next_offsets.clone();
        if found.next_offsets.is_empty() && found.batch.is_none() {
            return Ok(None);
        }
        Ok(Some(SinkCheckpoint {
            next_batch: found.batch.map_or(0, |b| b as u64 + 1),
            next_offsets: found.next_offsets,
        }))
    }
}
