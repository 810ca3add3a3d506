//! The blocking half of a batch, done on the topic's file worker ([`super::worker`]): the
//! plan written durably, the fetched records decoded into Arrow, the sink's files written and
//! made durable, the bad records kept, the commit written. The async side only fetches; every
//! file operation of a topic happens here, on one thread, in this order.

use std::collections::BTreeMap;
use std::path::Path;

use tokio::sync::mpsc;

use super::fetch::{Chunk, Fetched};
use crate::consume::ConsumeError;
use crate::consume::bad_records::{BadRecordEntry, BadRecordsPlace};
use crate::consume::checkpoint::{Checkpoint, CheckpointError, Commit, Plan, Recovered};
use crate::consume::reconcile::Reconcile;
use crate::consume::schema::RowDecoder;
use crate::settings::BadRecordPolicy;
use crate::sink::{BatchDone, Sink, SinkError};

/// Everything of one topic that lives in files, owned by its file worker.
pub struct TopicFiles {
    pub topic: String,
    pub decoder: RowDecoder,
    pub sink: Box<dyn Sink>,
    /// `None` for the console sink, which keeps no state between runs.
    pub checkpoint: Option<Checkpoint>,
    /// Where bad records go (`OUTPUT/TOPIC/_bad_records/`, or the log).
    pub bad_records: BadRecordsPlace,
    /// Distinguishes the files of one instance among several.
    pub instance_suffix: String,
    /// Delete this consumer's earlier output and checkpoint before starting (`--overwrite`).
    pub overwrite: bool,
    pub max_records_per_file: usize,
    pub on_bad_record: BadRecordPolicy,
}

/// A batch for the file worker: its plan, where the topic stands once it commits, and the
/// records as they are fetched (a bounded channel: fetching runs at most a few chunks ahead
/// of writing).
pub(super) struct BatchOrder {
    pub plan: Plan,
    /// The next offset of every owned partition after this batch.
    pub next_offsets: BTreeMap<i32, i64>,
    pub chunks: mpsc::Receiver<Fetched>,
}

/// Where a topic's run starts.
#[derive(Debug, Default)]
pub(super) struct Resumption {
    /// The next offset of each partition committed output accounts for (others start at
    /// `consumer.starting_offsets`).
    pub next_offsets: BTreeMap<i32, i64>,
    pub next_batch: u64,
    /// A planned batch that never committed: replay it first.
    pub unfinished: Option<Plan>,
}

/// How a batch ended on the file worker.
pub(super) enum BatchOutcome {
    /// The output is durable and so is this commit.
    Committed(Commit),
    /// The records stopped before [`Fetched::Complete`]: a fetch failed (the async side
    /// reports why) or the batch was given up. Nothing is committed; a retry or a rerun
    /// replaces what was written.
    Abandoned,
    Failed(ConsumeError),
}

/// What decoding a batch's records came to so far.
#[derive(Default)]
struct Decoded {
    rows: u64,
    bad: Vec<BadRecordEntry>,
}

impl TopicFiles {
    /// Where the topic resumes: with a checkpoint, `--overwrite` applied, the checkpoint read
    /// and the output checked against it ([`Reconcile`]); with a sink that keeps its own
    /// offsets (Delta), what its table records; nothing for the console sink.
    pub(super) fn recover(&mut self) -> Result<Resumption, ConsumeError> {
        let Some(checkpoint) = &self.checkpoint else {
            let kept = self.sink.checkpoint().map_err(|e| self.sink_error(e))?;
            return Ok(kept.map_or_else(Resumption::default, |k| Resumption {
                next_offsets: k.next_offsets,
                next_batch: k.next_batch,
                unfinished: None,
            }));
        };
        let reconcile = Reconcile {
            topic: self.topic.clone(),
            bad_records_dir: self.bad_records.dir().map(Path::to_path_buf),
            suffix: self.instance_suffix.clone(),
            overwrite: self.overwrite,
        };
        let Recovered {
            last_commit,
            unfinished,
        } = reconcile.run(checkpoint, self.sink.as_mut())?;
        Ok(match last_commit {
            Some(commit) => Resumption {
                next_offsets: commit.next_offsets,
                next_batch: commit.batch + 1,
                unfinished,
            },
            None => Resumption {
                unfinished,
                ..Resumption::default()
            },
        })
    }

    /// Starts `batch` afresh: whatever an earlier attempt of it left (rows in the decoder,
    /// files in the sink, its bad records) goes. Also how an abandoned plan's output is
    /// removed.
    pub(super) fn begin(&mut self, batch: u64) -> Result<(), ConsumeError> {
        self.decoder.finish();
        self.sink.begin(batch).map_err(|e| self.sink_error(e))?;
        self.bad_records
            .clear(batch, &self.instance_suffix)
            .map_err(|e| self.sink_error(e))
    }

    /// Runs one batch to its commit, or to the first error.
    pub(super) fn write_batch(&mut self, order: BatchOrder) -> BatchOutcome {
        match self.try_write_batch(order) {
            Ok(Some(commit)) => BatchOutcome::Committed(commit),
            Ok(None) => BatchOutcome::Abandoned,
            Err(error) => BatchOutcome::Failed(error),
        }
    }

    fn try_write_batch(&mut self, order: BatchOrder) -> Result<Option<Commit>, ConsumeError> {
        let BatchOrder {
            plan,
            next_offsets,
            mut chunks,
        } = order;
        // The plan is durable before any output (rewriting it on a retry or replay is harmless).
        self.write_checkpoint(|c| c.write_plan(&plan))?;
        self.begin(plan.batch)?;
        let mut decoded = Decoded::default();
        let mut complete = false;
        while let Some(fetched) = chunks.blocking_recv() {
            match fetched {
                Fetched::Records(chunk) => self.decode(chunk, &mut decoded)?,
                Fetched::Complete => {
                    complete = true;
                    break;
                }
            }
        }
        if !complete {
            return Ok(None);
        }
        self.flush()?;
        self.keep_bad_records(plan.batch, &decoded.bad)?;
        let done = BatchDone {
            batch: plan.batch,
            next_offsets: &next_offsets,
        };
        let files = self.sink.commit(done).map_err(|e| self.sink_error(e))?;
        let commit = Commit {
            batch: plan.batch,
            next_offsets,
            files,
            rows: decoded.rows,
            bad_records: decoded.bad.len() as u64,
        };
        self.write_checkpoint(|c| c.write_commit(&commit))?;
        Ok(Some(commit))
    }

    /// Decodes a chunk's records into rows (written out every `max_records_per_file`) or bad
    /// records, which stop the batch with `on_bad_record = "fail"`.
    fn decode(&mut self, chunk: Chunk, decoded: &mut Decoded) -> Result<(), ConsumeError> {
        let set = &chunk.records;
        for r in set.records() {
            let result = match set.value(r) {
                None => Err("the record has no value".to_string()),
                Some(payload) => self.decoder.decode(payload),
            };
            let reason = match result {
                Ok(()) => {
                    decoded.rows += 1;
                    if self.decoder.rows() >= self.max_records_per_file {
                        self.flush()?;
                    }
                    continue;
                }
                Err(reason) => reason,
            };
            if self.on_bad_record == BadRecordPolicy::Fail {
                return Err(ConsumeError::BadRecord {
                    topic: self.topic.clone(),
                    partition: chunk.partition,
                    offset: r.offset,
                    reason,
                });
            }
            decoded.bad.push(BadRecordEntry::new(
                &self.topic,
                chunk.partition,
                r.offset,
                set.value(r),
                reason,
            ));
        }
        Ok(())
    }

    /// Hands the decoded rows, if any, to the sink as one file's worth.
    fn flush(&mut self) -> Result<(), ConsumeError> {
        if self.decoder.rows() == 0 {
            return Ok(());
        }
        let rows = self.decoder.finish();
        self.sink.write(&rows).map_err(|e| self.sink_error(e))
    }

    /// Keeps the batch's bad records where the sink's output keeps them.
    fn keep_bad_records(&self, batch: u64, bad: &[BadRecordEntry]) -> Result<(), ConsumeError> {
        self.bad_records
            .keep(batch, &self.instance_suffix, bad)
            .map_err(|e| self.sink_error(e))
    }

    /// One durable checkpoint write; nothing with no checkpoint (console sink).
    fn write_checkpoint(
        &self,
        write: impl FnOnce(&Checkpoint) -> Result<(), CheckpointError>,
    ) -> Result<(), ConsumeError> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(());
        };
        write(checkpoint).map_err(|source| ConsumeError::Checkpoint {
            topic: self.topic.clone(),
            source,
        })
    }

    fn sink_error(&self, source: SinkError) -> ConsumeError {
        ConsumeError::Sink {
            topic: self.topic.clone(),
            source,
        }
    }
}
