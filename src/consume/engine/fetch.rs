//! The async half of a batch: fetching its planned ranges from Kafka, partitions
//! concurrently, into the bounded channel the topic's file worker reads. Nothing here touches
//! a file.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::{OffsetAt, PartitionClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::TopicJob;
use super::plan::handle_data_loss;
use crate::backoff::Retry;
use crate::consume::ConsumeError;
use crate::consume::checkpoint::Plan;
use crate::kafka::fetch::{FetchLimits, OFFSET_OUT_OF_RANGE, PartitionReader};
use crate::kafka::records::RecordSet;
use crate::kafka::{KafkaError, bounded};
use crate::settings::ConsumerSettings;
use crate::status::TopicStatus;

/// What one fetch of a partition asks for: bytes enough that a fetch is never the bottleneck,
/// few enough for a small box (a fetch's records arrive as one buffer, decoded on the file
/// worker while the next fetch runs); the broker rarely waits, as ranges we fetch exist.
const FETCH_LIMITS: FetchLimits = FetchLimits {
    max_bytes: 1024 * 1024,
    max_wait: Duration::from_millis(500),
};
/// Fetches in a row that bring no record before a range counts as unreadable.
const MAX_EMPTY_FETCHES: u32 = 10;

/// Records of one partition, in offset order, as one fetch brought them.
pub(super) struct Chunk {
    pub partition: i32,
    pub records: RecordSet,
}

/// What the fetchers send the file worker for one batch.
pub(super) enum Fetched {
    Records(Chunk),
    /// Every planned range came in whole: the batch may commit. Without it (a fetch failed,
    /// or the batch was abandoned) the channel just closes and nothing is committed.
    Complete,
}

/// Fetches every range of `plan` into `out`, partitions concurrently, and ends with
/// [`Fetched::Complete`]. The first fetch error stops the other fetches and is returned.
pub(super) async fn fetch_plan(
    job: &TopicJob,
    plan: &Plan,
    out: mpsc::Sender<Fetched>,
) -> Result<(), ConsumeError> {
    let mut fetchers = tokio::task::JoinSet::new();
    for (&partition, &(start, end)) in &plan.ranges {
        let owned = |c: &&Arc<PartitionClient>| c.partition() == partition;
        let client = job.partitions.iter().find(owned).map(Arc::clone);
        let reader = job.readers.get(&partition).map(Arc::clone);
        let (Some(client), Some(reader)) = (client, reader) else {
            unreachable!("planned partitions are owned");
        };
        let fetch = RangeFetch::for_job(job);
        let out = out.clone();
        fetchers.spawn(async move {
            let mut reader = reader.lock().await;
            let partition = Partition {
                offsets: &client,
                reader: &mut reader,
            };
            fetch.run(partition, start, end, out).await
        });
    }
    while let Some(done) = fetchers.join_next().await {
        // Dropping the set on return aborts the other fetchers.
        done.expect("fetcher panicked")?;
    }
    // A failed send means the worker stopped on an error of its own; it reports that.
    let _ = out.send(Fetched::Complete).await;
    Ok(())
}

/// What fetching a partition's range needs besides the partition.
struct RangeFetch {
    topic: String,
    settings: ConsumerSettings,
    timeout: Duration,
    status: Arc<TopicStatus>,
    stop: CancellationToken,
}

/// One partition, as a fetch reaches it.
struct Partition<'a> {
    /// For offset look-ups when a fetch is out of range.
    offsets: &'a PartitionClient,
    reader: &'a mut PartitionReader,
}

/// What one fetch request came to.
enum Fetch {
    /// Records of the range from the requested offset on, in order (none when only
    /// transaction markers, aborted records or a compacted gap were there), and where the
    /// next fetch starts.
    Records(RecordSet),
    /// The requested offset is gone (retention); go on here (`on_data_loss = "skip"`).
    SkipTo(i64),
    /// A failed request; the retry decides whether it is worth another.
    Failed(KafkaError),
}

impl RangeFetch {
    fn for_job(job: &TopicJob) -> Self {
        Self {
            topic: job.topic.clone(),
            settings: job.settings.clone(),
            timeout: job.request_timeout,
            status: Arc::clone(&job.status),
            stop: job.stop.clone(),
        }
    }

    /// Fetches `[start, end)` of one partition into `out`, in order, retrying failed fetches
    /// until `consumer.retry_deadline`.
    async fn run(
        &self,
        mut client: Partition<'_>,
        start: i64,
        end: i64,
        out: mpsc::Sender<Fetched>,
    ) -> Result<(), ConsumeError> {
        let partition = client.reader.partition();
        let mut offset = start;
        let mut retry = Retry::new(self.settings.retry_policy()).stop_on(self.stop.clone());
        let mut empty_fetches = 0;
        while offset < end {
            let error = match self.fetch_once(&mut client, offset, end).await? {
                Fetch::Records(records) => {
                    retry.succeeded();
                    let moved_on = records.next_offset > offset;
                    offset = offset.max(records.next_offset);
                    if records.is_empty() {
                        // Markers, aborted records or a compacted gap: the offset moved on.
                        // A fetch that brings nothing at all, again and again, is a range
                        // the broker cannot serve.
                        empty_fetches = if moved_on { 0 } else { empty_fetches + 1 };
                        if empty_fetches > MAX_EMPTY_FETCHES {
                            return Err(ConsumeError::NoRecords {
                                topic: self.topic.clone(),
                                partition,
                                from: offset,
                                to: end,
                            });
                        }
                        continue;
                    }
                    empty_fetches = 0;
                    let chunk = Chunk { partition, records };
                    if out.send(Fetched::Records(chunk)).await.is_err() {
                        return Ok(()); // the worker stopped; its error is reported
                    }
                    continue;
                }
                Fetch::SkipTo(earliest) => {
                    offset = earliest;
                    continue;
                }
                Fetch::Failed(error) => error,
            };
            self.status.trouble.failed(error.to_string());
            let what = format!("topic {}: {}", self.topic, fetching(partition, offset));
            retry
                .pause(&what, error, KafkaError::is_retriable)
                .await
                .map_err(|source| ConsumeError::Broker {
                    topic: self.topic.clone(),
                    source: Box::new(source),
                })?;
        }
        Ok(())
    }

    /// One fetch at `offset`, its records cut to the range, bounded by `kafka.timeout`.
    async fn fetch_once(
        &self,
        client: &mut Partition<'_>,
        offset: i64,
        end: i64,
    ) -> Result<Fetch, ConsumeError> {
        let partition = client.reader.partition();
        let fetch = client.reader.fetch(offset..end, FETCH_LIMITS);
        let error = match tokio::time::timeout(self.timeout, fetch).await {
            Ok(Ok(records)) => return Ok(Fetch::Records(records)),
            Ok(Err(error)) => KafkaError::from(error),
            Err(_) => {
                // The reader's connection may hold half an answer: start afresh.
                client.reader.disconnect();
                KafkaError::NoAnswer {
                    operation: fetching(partition, offset),
                    timeout: self.timeout,
                }
            }
        };
        if error.fetch_code() == Some(OFFSET_OUT_OF_RANGE) {
            return self.out_of_range(client.offsets, offset, end, error).await;
        }
        Ok(Fetch::Failed(error))
    }

    /// The broker says `offset` is out of range: below its earliest, retention removed the
    /// records (by `on_data_loss`); past its latest, the topic changed under a planned batch
    /// (nothing to retry: a rerun replays the plan and applies `on_data_loss`).
    async fn out_of_range(
        &self,
        client: &PartitionClient,
        offset: i64,
        end: i64,
        error: KafkaError,
    ) -> Result<Fetch, ConsumeError> {
        let partition = client.partition();
        // Each look-up bounded: a broker that stops answering must not hold the fetch forever.
        // A failed one assumes the offset is still there, and the fetch is retried.
        let look_up = |at| bounded(self.timeout, "reading an offset", client.get_offset(at));
        let earliest = look_up(OffsetAt::Earliest).await.unwrap_or(offset);
        if earliest > offset {
            handle_data_loss(
                &self.topic,
                partition,
                offset,
                earliest,
                self.settings.on_data_loss,
            )?;
            return Ok(Fetch::SkipTo(earliest));
        }
        let latest = look_up(OffsetAt::Latest).await.unwrap_or(end);
        if latest < offset {
            return Err(ConsumeError::TopicChanged {
                topic: self.topic.clone(),
                partition,
                offset,
                earliest,
                latest,
            });
        }
        // In range by now (a new leader caught up): worth another try.
        Ok(Fetch::Failed(error))
    }
}

/// Names a fetch in errors and logs.
fn fetching(partition: i32, offset: i64) -> String {
    format!("fetching partition {partition} at offset {offset}")
}
