//! One task per partition: gathers records into batches (linger, size), produces them, and
//! retries failures without writing a record twice.
//!
//! Exactly one batch per partition is in flight at a time; the next one gathers meanwhile, and
//! partitions and sources run in parallel. One in flight is what keeps per-key order under
//! retries: with two, a failed first batch retried after a successful second would invert
//! them, and rskafka has no idempotent producer to sort that out.
//!
//! Before a retry the writer reads what reached the partition since its last acknowledged
//! batch and drops the records already there (matched by the `source`/`source-offset`
//! headers): a produce request that failed on the way back (timeout, broken connection) may
//! still have been written, and must not be written again.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use rskafka::chrono::{DateTime, Utc};
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient};
use tokio::sync::mpsc;

use super::ProduceError;
use super::record::Prepared;
use super::resume::{bounded, read_source_offsets};
use super::window::Window;
use crate::backoff::{Retry, RetryPolicy};
use crate::status::{SourceCounters, TopicStatus};

/// What every partition writer of one source shares.
#[derive(Debug)]
pub struct WriterContext {
    pub source_name: String,
    pub topic: String,
    pub compression: Compression,
    pub linger: Duration,
    pub batch_max_bytes: usize,
    pub retry: RetryPolicy,
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
}

impl PartitionWriter {
    pub fn new(ctx: Arc<WriterContext>, client: PartitionClient, log_end: i64) -> Self {
        Self {
            ctx,
            client,
            log_end,
        }
    }

    /// Writes everything `records` yields, in order, until the channel closes.
    pub async fn run(mut self, mut records: mpsc::Receiver<Prepared>) -> Result<(), ProduceError> {
        let mut batch: Vec<Prepared> = Vec::new();
        while let Some(first) = records.recv().await {
            let mut bytes = first.approximate_size();
            batch.push(first);
            let linger_until = tokio::time::Instant::now() + self.ctx.linger;
            while bytes < self.ctx.batch_max_bytes {
                let next = match records.try_recv() {
                    Ok(record) => Some(record),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        // `None` once lingered long enough (or the channel closed).
                        tokio::time::timeout_at(linger_until, records.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                };
                let Some(record) = next else { break };
                bytes += record.approximate_size();
                batch.push(record);
            }
            self.send(&mut batch, bytes).await?;
            batch.clear();
        }
        Ok(())
    }

    /// Produces one batch, retrying until it is acknowledged or the retry deadline passes.
    async fn send(&mut self, batch: &mut Vec<Prepared>, bytes: usize) -> Result<(), ProduceError> {
        let count = batch.len();
        // Taken now: a retry may drop records that landed anyway, and those are settled too.
        let offsets: Vec<u64> = batch.iter().map(|p| p.offset).collect();
        let value_bytes: usize = batch.iter().map(|p| p.value.len()).sum();
        let mut retry = Retry::new(self.ctx.retry);
        // After a failed attempt, every retry is preceded by a look at what landed.
        let mut failed_before = false;
        loop {
            if failed_before {
                if let Err(error) = self.drop_landed(batch).await {
                    self.wait(&mut retry, "check what the failed batch wrote", &error)
                        .await?;
                    continue;
                }
                if batch.is_empty() {
                    break;
                }
            }
            let timestamp = now();
            let records = batch
                .iter()
                .map(|p| p.to_record(&self.ctx.source_name, timestamp))
                .collect();
            let produced = tokio::time::timeout(
                self.ctx.request_timeout,
                self.client.produce(records, self.ctx.compression),
            )
            .await;
            match produced {
                Ok(Ok(offsets)) => {
                    if let Some(last) = offsets.last() {
                        self.log_end = last + 1;
                    }
                    break;
                }
                Ok(Err(error)) if !retriable(&error) => {
                    return Err(ProduceError::Rejected {
                        source_name: self.ctx.source_name.clone(),
                        topic: self.ctx.topic.clone(),
                        partition: self.client.partition(),
                        records: batch.len(),
                        bytes,
                        error: error.to_string(),
                    });
                }
                Ok(Err(error)) => {
                    failed_before = true;
                    self.wait(&mut retry, "produce", &error.to_string()).await?;
                }
                Err(_) => {
                    failed_before = true;
                    let error = format!("no answer within {:?}", self.ctx.request_timeout);
                    self.wait(&mut retry, "produce", &error).await?;
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
        Ok(())
    }

    async fn wait(&self, retry: &mut Retry, what: &str, error: &str) -> Result<(), ProduceError> {
        let partition = self.client.partition();
        let Some(wait) = retry.failed() else {
            return Err(ProduceError::GaveUp {
                source_name: self.ctx.source_name.clone(),
                topic: self.ctx.topic.clone(),
                partition,
                attempts: retry.attempts(),
                outage: retry.outage(),
                error: error.to_string(),
            });
        };
        tracing::warn!(
            source = %self.ctx.source_name,
            topic = %self.ctx.topic,
            partition,
            attempt = retry.attempts(),
            retry_in = ?wait,
            %error,
            "{what} failed; retrying"
        );
        self.ctx.stats.trouble.failed(format!(
            "{what} to {}/{partition} failed: {error}",
            self.ctx.topic
        ));
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Removes from `batch` the records this source already has in the partition beyond
    /// `log_end`, then moves `log_end` to the partition's current end.
    async fn drop_landed(&mut self, batch: &mut Vec<Prepared>) -> Result<(), String> {
        let end = bounded(
            self.ctx.request_timeout,
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

/// Errors that another attempt cannot fix: the request itself is unacceptable.
fn retriable(error: &ClientError) -> bool {
    !matches!(
        error,
        ClientError::ServerError {
            protocol_error: ProtocolError::MessageTooLarge
                | ProtocolError::RecordListTooLarge
                | ProtocolError::InvalidRecord
                | ProtocolError::InvalidTopicException
                | ProtocolError::TopicAuthorizationFailed
                | ProtocolError::ClusterAuthorizationFailed
                | ProtocolError::UnsupportedVersion,
            ..
        }
    )
}

fn now() -> DateTime<Utc> {
    let millis = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}
