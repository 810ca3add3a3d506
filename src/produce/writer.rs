//! One task per partition: gathers records into batches (linger, size), produces them, and
//! retries failures without writing a record twice.
//!
//! Exactly one batch per partition is in flight at a time; the next one gathers meanwhile, and
//! partitions and sources run in parallel. One in flight is what keeps per-key order under
//! retries: with two, a failed first batch retried after a successful second would invert
//! them, and rskafka has no idempotent producer to sort that out.
//!
//! A batch the broker refuses as too large (`MessageTooLarge`: the topic's `max.message.bytes`
//! applies to a whole batch) is split in halves, sent in order, until the pieces fit; a record
//! refused on its own can never be written and is a bad record for `producer.on_bad_record`
//! (counted, logged with its source-offset and size, skipped; or the producer stops), never a
//! halt of the whole source. It leaves the window like an acknowledged record: `--resume`
//! treats it like any bad record (see [`super::resume`]).
//!
//! Before a retry the writer reads what reached the partition since its last acknowledged
//! batch and drops the records already there (matched by the `source`/`source-offset`
//! headers): a produce request that failed on the way back (timeout, broken connection) may
//! still have been written, and must not be written again.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::ProtocolError;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient};
use rskafka::record::EncodedRecords;
use tokio::sync::mpsc;

use super::ProduceError;
use super::record::{BadRecord, Prepared};
use super::resume::read_source_offsets;
use super::window::Window;
use crate::backoff::{Retry, RetryError, RetryPolicy};
use crate::kafka::{KafkaError, bounded};
use crate::settings::BadRecordPolicy;
use crate::status::{SourceCounters, TopicStatus};

/// What every partition writer of one source shares.
#[derive(Debug)]
pub struct WriterContext {
    pub source_name: String,
    pub topic: String,
    pub compression: Compression,
    pub linger: Duration,
    pub batch_max_bytes: usize,
    /// The most a batch may hold (estimated), from the topic's `max.message.bytes`: the
    /// broker refuses a larger batch whole. A record alone above it still goes alone, and
    /// the broker's answer decides (compression may make it fit).
    pub batch_limit: usize,
    pub retry: RetryPolicy,
    /// What a record the broker can never accept (too large) does: skip or stop.
    pub on_bad_record: BadRecordPolicy,
    /// Bounds each produce/fetch request, so a broker that accepts and never answers is
    /// retried rather than waited on forever.
    pub request_timeout: Duration,
    pub stats: Arc<SourceCounters>,
    pub topic_status: Arc<TopicStatus>,
    /// The source's window of unacknowledged records: the reader acquires each record's
    /// offset, the writer acknowledges it here once the broker has it.
    pub window: Arc<Window>,
}

pub struct PartitionWriter {
    ctx: Arc<WriterContext>,
    client: PartitionClient,
    /// The partition's end offset after our last acknowledged batch: where a retry starts
    /// looking for records that landed anyway.
    log_end: i64,
    /// The encoded records of the batch being produced, kept from batch to batch: a fresh
    /// buffer each time would fault its pages in again (freed memory goes back to the OS at
    /// once, see main.rs).
    buffer: Vec<u8>,
}

impl PartitionWriter {
    pub fn new(ctx: Arc<WriterContext>, client: PartitionClient, log_end: i64) -> Self {
        Self {
            ctx,
            client,
            log_end,
            buffer: Vec::new(),
        }
    }

    /// Writes everything `chunks` yields, in order, until the channel closes.
    pub async fn run(
        mut self,
        mut chunks: mpsc::Receiver<Vec<Prepared>>,
    ) -> Result<(), ProduceError> {
        // Received and not yet in a batch: the rest of a chunk, or a record that would have
        // pushed the batch past the topic's limit and starts the next one.
        let mut received: VecDeque<Prepared> = VecDeque::new();
        // One buffer for every batch: a fresh one per batch would fault its pages in again
        // each time (freed memory goes back to the OS at once, see main.rs).
        let mut batch: Vec<Prepared> = Vec::new();
        loop {
            if received.is_empty() {
                match chunks.recv().await {
                    Some(chunk) => received = VecDeque::from(chunk),
                    None => break,
                }
            }
            self.gather(&mut received, &mut chunks, &mut batch).await;
            self.write(&mut batch).await?;
        }
        Ok(())
    }

    /// Moves records from `received` (topped up from `chunks`) into `batch` until it is
    /// full, the topic's limit is reached, or `linger` has passed since its first record.
    /// The first record always goes in: alone above the limit, the broker's answer decides.
    async fn gather(
        &self,
        received: &mut VecDeque<Prepared>,
        chunks: &mut mpsc::Receiver<Vec<Prepared>>,
        batch: &mut Vec<Prepared>,
    ) {
        let linger_until = tokio::time::Instant::now() + self.ctx.linger;
        let mut bytes = 0;
        loop {
            while let Some(record) = received.front() {
                let size = record.approximate_size();
                let full = bytes >= self.ctx.batch_max_bytes;
                if !batch.is_empty() && (full || bytes + size > self.ctx.batch_limit) {
                    return;
                }
                bytes += size;
                batch.extend(received.pop_front());
            }
            if bytes >= self.ctx.batch_max_bytes {
                return;
            }
            let next = match chunks.try_recv() {
                Ok(chunk) => Some(chunk),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                // `None` once lingered long enough (or the channel closed).
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(linger_until, chunks.recv())
                        .await
                        .ok()
                        .flatten()
                }
            };
            match next {
                // `received` is empty here: the chunk takes its place, without a copy.
                Some(chunk) => *received = VecDeque::from(chunk),
                None => return,
            }
        }
    }

    /// Writes `batch` (leaving it empty, its capacity kept), in order, splitting it while the
    /// broker finds it too large.
    async fn write(&mut self, batch: &mut Vec<Prepared>) -> Result<(), ProduceError> {
        if let Sent::Written = self.send(batch).await? {
            batch.clear();
            return Ok(());
        }
        let refused = std::mem::take(batch);
        self.split(refused).await
    }

    /// Sends a batch the broker refused as too large in ever smaller pieces, in order; a
    /// record refused on its own is [`Self::too_large`].
    async fn split(&mut self, refused: Vec<Prepared>) -> Result<(), ProduceError> {
        let mut pieces = VecDeque::new();
        self.refused(refused, &mut pieces)?;
        while let Some(mut piece) = pieces.pop_front() {
            if let Sent::TooLarge = self.send(&mut piece).await? {
                self.refused(piece, &mut pieces)?;
            }
        }
        Ok(())
    }

    /// A piece the broker refused: its two halves go first in line, or, a single record, it
    /// is a bad record.
    fn refused(
        &self,
        mut piece: Vec<Prepared>,
        pieces: &mut VecDeque<Vec<Prepared>>,
    ) -> Result<(), ProduceError> {
        if piece.len() == 1 {
            return self.too_large(&piece[0]);
        }
        // Batches are kept below the topic's max.message.bytes when it is known; this is the
        // fallback when it is not (or the broker counts otherwise).
        tracing::warn!(
            source = %self.ctx.source_name,
            topic = %self.ctx.topic,
            partition = self.client.partition(),
            records = piece.len(),
            "the broker refused a batch as too large; sending it in halves"
        );
        let second = piece.split_off(piece.len() / 2);
        pieces.push_front(second);
        pieces.push_front(piece);
        Ok(())
    }

    /// A record the broker refuses on its own: a bad record, never written.
    fn too_large(&self, record: &Prepared) -> Result<(), ProduceError> {
        let bytes = record.approximate_size();
        let reason = BadRecord::TooLarge {
            bytes,
            topic: self.ctx.topic.clone(),
        };
        self.ctx.stats.bad.fetch_add(1, Ordering::Relaxed);
        self.ctx.window.ack([record.offset]);
        if self.ctx.on_bad_record == BadRecordPolicy::Fail {
            return Err(ProduceError::BadRecord {
                source_name: self.ctx.source_name.clone(),
                offset: record.offset,
                reason,
            });
        }
        tracing::warn!(
            source = %self.ctx.source_name,
            source_offset = record.offset,
            bytes,
            topic = %self.ctx.topic,
            partition = self.client.partition(),
            reason = %reason,
            "bad record skipped: the broker refuses it as too large"
        );
        Ok(())
    }

    /// Produces one batch, retrying until it is acknowledged or the retry deadline passes;
    /// `TooLarge` (nothing written) if the broker refuses it for its size.
    async fn send(&mut self, batch: &mut Vec<Prepared>) -> Result<Sent, ProduceError> {
        let count = batch.len();
        let bytes: usize = batch.iter().map(Prepared::approximate_size).sum();
        // Taken now: a retry may drop records that landed anyway, and those are settled too.
        let offsets: Vec<u64> = batch.iter().map(|p| p.offset).collect();
        let value_bytes: usize = batch.iter().map(|p| p.value.len()).sum();
        let mut retry = Retry::new(self.ctx.retry);
        // After a failed attempt, every retry is preceded by a look at what landed.
        let mut failed_before = false;
        loop {
            if failed_before {
                if let Err(error) = self.drop_landed(batch).await {
                    self.wait(&mut retry, error, bytes).await?;
                    continue;
                }
                if batch.is_empty() {
                    break;
                }
            }
            let mut records = EncodedRecords::with_buffer(std::mem::take(&mut self.buffer));
            for record in batch.iter() {
                record.encode_into(&self.ctx.source_name, &mut records);
            }
            let produce = self
                .client
                .produce_encoded(&mut records, now(), self.ctx.compression);
            let produced = bounded(self.ctx.request_timeout, "produce", produce).await;
            self.buffer = records.into_buffer();
            match produced {
                Ok(offsets) => {
                    if let Some(last) = offsets.last() {
                        self.log_end = last + 1;
                    }
                    break;
                }
                Err(error) if too_large(&error) => {
                    self.settle_landed(&offsets, batch);
                    return Ok(Sent::TooLarge);
                }
                Err(error) => {
                    failed_before = true;
                    self.wait(&mut retry, error, bytes).await?;
                }
            }
        }
        let stats = &self.ctx.stats;
        stats.trouble.recovered();
        stats.records.fetch_add(count as u64, Ordering::Relaxed);
        stats.bytes.fetch_add(value_bytes as u64, Ordering::Relaxed);
        self.ctx
            .topic_status
            .observe_latest(self.client.partition(), self.log_end);
        self.ctx.window.ack(offsets);
        Ok(Sent::Written)
    }

    /// Before a refused batch goes back to be split: records of it that an earlier failed
    /// attempt had written anyway (dropped from `batch` by [`Self::drop_landed`]) are done.
    /// (A batch is written whole or not at all, so this is a safeguard, not a path in use.)
    fn settle_landed(&self, offsets: &[u64], batch: &[Prepared]) {
        let left: HashSet<u64> = batch.iter().map(|p| p.offset).collect();
        let landed: Vec<u64> = offsets
            .iter()
            .copied()
            .filter(|o| !left.contains(o))
            .collect();
        let stats = &self.ctx.stats;
        stats
            .records
            .fetch_add(landed.len() as u64, Ordering::Relaxed);
        self.ctx.window.ack(landed);
    }

    /// After a failed attempt at a batch of `bytes`: the status page hears of it, and the one
    /// retry decision ([`Retry::pause`] with [`KafkaError::is_retriable`]) waits or gives up.
    async fn wait(
        &self,
        retry: &mut Retry,
        error: KafkaError,
        bytes: usize,
    ) -> Result<(), ProduceError> {
        let partition = self.client.partition();
        let (source_name, topic) = (&self.ctx.source_name, &self.ctx.topic);
        self.ctx
            .stats
            .trouble
            .failed(format!("writing to {topic}/{partition} failed: {error}"));
        let what = format!("source {source_name}: writing to {topic}/{partition}");
        let ended = match retry.pause(&what, error, KafkaError::is_retriable).await {
            Ok(()) => return Ok(()),
            Err(ended) => ended,
        };
        let (source_name, topic) = (source_name.clone(), topic.clone());
        Err(match ended {
            RetryError::Fatal(source) => ProduceError::Rejected {
                source_name,
                topic,
                partition,
                bytes,
                source: Box::new(source),
            },
            // The writer's retries watch no stop: on shutdown it writes what it read.
            RetryError::GaveUp { last, .. } | RetryError::Stopped(last) => ProduceError::GaveUp {
                source_name,
                topic,
                partition,
                attempts: retry.attempts(),
                outage: retry.outage(),
                source: Box::new(last),
            },
        })
    }

    /// Removes from `batch` the records this source already has in the partition beyond
    /// `log_end`, then moves `log_end` to the partition's current end.
    async fn drop_landed(&mut self, batch: &mut Vec<Prepared>) -> Result<(), KafkaError> {
        let end = bounded(
            self.ctx.request_timeout,
            "reading the end offset",
            self.client.get_offset(OffsetAt::Latest),
        )
        .await?;
        if end > self.log_end {
            let mut landed = HashSet::new();
            read_source_offsets(
                &self.client,
                &self.ctx.source_name,
                self.log_end,
                end,
                self.ctx.request_timeout,
                |offset| {
                    landed.insert(offset);
                },
            )
            .await?;
            let before = batch.len();
            batch.retain(|p| !landed.contains(&p.offset));
            if batch.len() < before {
                tracing::info!(
                    source = %self.ctx.source_name,
                    topic = %self.ctx.topic,
                    partition = self.client.partition(),
                    already_written = before - batch.len(),
                    "part of the failed batch had reached the broker; not writing it again"
                );
            }
        }
        self.log_end = end;
        Ok(())
    }
}

/// How a batch fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Acknowledged (or found already written after a failed attempt).
    Written,
    /// Refused whole for its size; nothing of it was written.
    TooLarge,
}

/// The broker refuses the batch for its size (`max.message.bytes`, or the segment size).
fn too_large(error: &KafkaError) -> bool {
    matches!(
        error.protocol_error(),
        Some(ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge)
    )
}

fn now() -> DateTime<Utc> {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}
