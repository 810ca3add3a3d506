//! The async half of a batch: fetching its planned ranges from Kafka, partitions
//! concurrently, into the bounded channel the topic's file worker reads. Nothing here touches
//! a file.

use std::sync::Arc;
use std::time::Duration;

use rskafka::client::error::ProtocolError;
use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::TopicJob;
use super::plan::handle_data_loss;
use crate::backoff::Retry;
use crate::consume::ConsumeError;
use crate::consume::checkpoint::Plan;
use crate::kafka::{KafkaError, bounded};
use crate::settings::ConsumerSettings;
use crate::status::TopicStatus;

/// Bytes one fetch may return per partition: large enough that a fetch is never the
/// bottleneck, small enough for a small box.
const FETCH_MAX_BYTES: i32 = 256 * 1024;
/// How long the broker may hold a fetch for data; ranges we fetch exist, so it rarely waits.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Fetches in a row that bring no record before a range counts as unreadable.
const MAX_EMPTY_FETCHES: u32 = 10;

/// Records of one partition, in offset order, as one fetch brought them.
pub(super) struct Chunk {
    pub partition: i32,
    pub records: Vec<RecordAndOffset>,
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
        let client = job
            .partitions
            .iter()
            .find(|c| c.partition() == partition)
            .map(Arc::clone)
            .expect("planned partitions are owned");
        let fetch = RangeFetch::for_job(job);
        let out = out.clone();
        fetchers.spawn(async move { fetch.run(&client, start, end, out).await });
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

/// What one fetch request came to.
enum Fetch {
    /// Records of the range from the requested offset on, in order; none when only control
    /// records or a compacted gap were there.
    Records(Vec<RecordAndOffset>),
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
        client: &PartitionClient,
        start: i64,
        end: i64,
        out: mpsc::Sender<Fetched>,
    ) -> Result<(), ConsumeError> {
        let partition = client.partition();
        let mut offset = start;
        let mut retry = Retry::new(self.settings.retry_policy()).stop_on(self.stop.clone());
        let mut empty_fetches = 0;
        while offset < end {
            let error = match self.fetch_once(client, offset, end).await? {
                Fetch::Records(records) => {
                    retry.succeeded();
                    let Some(last) = records.last() else {
                        empty_fetches += 1;
                        if empty_fetches > MAX_EMPTY_FETCHES {
                            return Err(ConsumeError::NoRecords {
                                topic: self.topic.clone(),
                                partition,
                                from: offset,
                                to: end,
                            });
                        }
                        continue;
                    };
                    empty_fetches = 0;
                    offset = last.offset + 1;
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
            let what = format!("topic {}: {}", self.topic, fetching(client, offset));
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

    /// One fetch at `offset`, its records cut to the range.
    async fn fetch_once(
        &self,
        client: &PartitionClient,
        offset: i64,
        end: i64,
    ) -> Result<Fetch, ConsumeError> {
        let fetch = client.fetch_records(offset, 1..FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS);
        match bounded(self.timeout, &fetching(client, offset), fetch).await {
            Ok((mut records, _high_watermark)) => {
                records.retain(|r| r.offset >= offset && r.offset < end);
                Ok(Fetch::Records(records))
            }
            Err(error) if error.protocol_error() == Some(ProtocolError::OffsetOutOfRange) => {
                self.out_of_range(client, offset, end, error).await
            }
            Err(error) => Ok(Fetch::Failed(error)),
        }
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
fn fetching(client: &PartitionClient, offset: i64) -> String {
    format!(
        "fetching partition {} at offset {offset}",
        client.partition()
    )
}
