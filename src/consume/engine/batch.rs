//! The blocking half of a batch, done on the topic's file worker ([`super::worker`]): the
//! plan written durably, the fetched records decoded into Arrow, the sink's files written and
//! made durable, the bad records kept, the commit written. The async side only fetches; every
//! file operation of a topic happens here, on one thread, in this order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::sync::mpsc;

use super::fetch::{Chunk, Fetched};
use crate::consume::ConsumeError;
use crate::consume::checkpoint::{Checkpoint, CheckpointError, Commit, Plan, Recovered};
use crate::consume::reconcile::Reconcile;
use crate::consume::schema::RowDecoder;
use crate::settings::BadRecordPolicy;
use crate::sink::{Sink, SinkError};

/// Bad records logged per batch when there is no `_bad_records/` directory (console sink).
const BAD_RECORDS_LOGGED: usize = 10;

/// Everything of one topic that lives in files, owned by its file worker.
pub struct TopicFiles {
    pub topic: String,
    pub decoder: RowDecoder,
    pub sink: Box<dyn Sink>,
    /// `None` for the console sink, which keeps no state between runs.
    pub checkpoint: Option<Checkpoint>,
    /// Where bad records go (`OUTPUT/TOPIC/_bad_records/`); `None` logs them instead.
    pub bad_records_dir: Option<PathBuf>,
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

/// A bad record as written to `_bad_records/`. The payload is kept exactly, once: as text
/// when it is UTF-8, else as `payload_base64`; neither when the record has no value. The
/// reason quotes at most an excerpt of it.
#[derive(Debug, Clone, Serialize)]
struct BadRecordEntry {
    topic: String,
    partition: i32,
    offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    reason: String,
}

impl BadRecordEntry {
    fn new(topic: &str, partition: i32, offset: i64, value: Option<&[u8]>, reason: String) -> Self {
        use base64::Engine as _;
        let (payload, payload_base64) = match value {
            None => (None, None),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => (Some(text.to_string()), None),
                Err(_) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                ),
            },
        };
        Self {
            topic: topic.to_string(),
            partition,
            offset,
            payload,
            payload_base64,
            reason,
        }
    }
}

/// What decoding a batch's records came to so far.
#[derive(Default)]
struct Decoded {
    rows: u64,
    bad: Vec<BadRecordEntry>,
}

impl TopicFiles {
    /// Applies `--overwrite`, reads the checkpoint and checks the output against it
    /// ([`Reconcile`]); nothing to read for the console sink.
    pub(super) fn recover(&mut self) -> Result<Recovered, ConsumeError> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(Recovered::default());
        };
        let reconcile = Reconcile {
            topic: self.topic.clone(),
            bad_records_dir: self.bad_records_dir.clone(),
            suffix: self.instance_suffix.clone(),
            overwrite: self.overwrite,
        };
        reconcile.run(checkpoint, self.sink.as_mut())
    }

    /// Starts `batch` afresh: whatever an earlier attempt of it left (rows in the decoder,
    /// files in the sink, its bad records) goes. Also how an abandoned plan's output is
    /// removed.
    pub(super) fn begin(&mut self, batch: u64) -> Result<(), ConsumeError> {
        self.decoder.finish();
        self.sink.begin(batch).map_err(|e| self.sink_error(e))?;
        let Some(dir) = &self.bad_records_dir else {
            return Ok(());
        };
        let path = bad_records_path(dir, batch, &self.instance_suffix);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(self.sink_error(SinkError::Io {
                path: path.display().to_string(),
                source,
            })),
        }
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
        let files = self.sink.commit().map_err(|e| self.sink_error(e))?;
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
        for r in chunk.records {
            let result = match r.record.value.as_deref() {
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
                r.record.value.as_deref(),
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

    /// Writes the batch's bad records to `_bad_records/`, or logs the first few when there is
    /// no such directory (console sink).
    fn keep_bad_records(&self, batch: u64, bad: &[BadRecordEntry]) -> Result<(), ConsumeError> {
        if bad.is_empty() {
            return Ok(());
        }
        match &self.bad_records_dir {
            Some(dir) => write_bad_records(dir, batch, &self.instance_suffix, bad)
                .map_err(|e| self.sink_error(e)),
            None => {
                for b in bad.iter().take(BAD_RECORDS_LOGGED) {
                    tracing::warn!(topic = %b.topic, partition = b.partition, offset = b.offset, reason = %b.reason, "bad record skipped");
                }
                Ok(())
            }
        }
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

/// `_bad_records/batch-<batch><suffix>.jsonl`.
fn bad_records_path(dir: &Path, batch: u64, suffix: &str) -> PathBuf {
    dir.join(format!("batch-{batch:08}{suffix}.jsonl"))
}

/// Writes a batch's bad records, whole or not at all.
fn write_bad_records(
    dir: &Path,
    batch: u64,
    suffix: &str,
    bad: &[BadRecordEntry],
) -> Result<(), SinkError> {
    let path = bad_records_path(dir, batch, suffix);
    let mut text = Vec::new();
    for b in bad {
        serde_json::to_writer(&mut text, b).expect("bad record entries serialize");
        text.push(b'\n');
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::durable::write_file(&path, &text))
        .map_err(|source| SinkError::Io {
            path: path.display().to_string(),
            source,
        })
}
