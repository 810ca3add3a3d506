//! One topic's micro-batch loop: wait for the trigger, plan the next offset ranges, fetch the
//! partitions concurrently, decode straight into Arrow, hand the rows to the sink, commit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Checkpoint, CheckpointError, Commit, Plan, Recovered};
use super::lock::Ownership;
use super::reconcile::Reconcile;
use super::schema::RowDecoder;
use super::{ConsumeError, TopicSummary};
use crate::backoff::{Retry, RetryPolicy};
use crate::settings::{
    BadRecordPolicy, ColumnType, ConsumerSettings, DataLossPolicy, StartingOffsets, Trigger,
};
use crate::sink::Sink;
use crate::status::{BatchReport, RunState, TopicStatus};

/// Bytes one fetch may return per partition: large enough that a fetch is never the
/// bottleneck, small enough for a small box.
const FETCH_MAX_BYTES: i32 = 256 * 1024;
/// How long the broker may hold a fetch for data; ranges we fetch exist, so it rarely waits.
const FETCH_MAX_WAIT_MS: i32 = 500;
/// Fetched chunks queued for decoding: bounds memory while fetching runs ahead.
const CHUNK_QUEUE: usize = 2;
/// Bad records logged per batch when there is no `_bad_records/` directory (console sink).
const BAD_RECORDS_LOGGED: usize = 10;
/// How often latest offsets are looked up between batches while a status page watches, so
/// its lag is current even with a long trigger interval.
const STATUS_REFRESH: Duration = Duration::from_secs(2);

/// Everything one topic's loop needs.
pub struct TopicJob {
    pub topic: String,
    pub partitions: Vec<Arc<PartitionClient>>,
    pub schema: IndexMap<String, ColumnType>,
    /// `None` for the console sink, which keeps no state between runs.
    pub checkpoint: Option<Checkpoint>,
    /// The locks that make this job the checkpoint's only writer: never read, held while the
    /// job lives (dropping them releases them).
    pub _locks: Option<Ownership>,
    /// Delete this job's earlier output and checkpoint before starting (`--overwrite`).
    pub overwrite: bool,
    /// Where bad records go (`OUTPUT/TOPIC/_bad_records/`); `None` logs them instead.
    pub bad_records_dir: Option<PathBuf>,
    /// Distinguishes the files of one instance among several.
    pub instance_suffix: String,
    pub settings: ConsumerSettings,
    pub request_timeout: Duration,
    pub status: Arc<TopicStatus>,
    /// Whether a status server shows `status` (then latest offsets are refreshed between
    /// batches).
    pub watched: bool,
}

/// A bad record as written to `_bad_records/`. The payload is kept exactly: as text when it
/// is UTF-8, else as `payload_base64`; neither when the record has no value.
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

struct Chunk {
    partition: i32,
    records: Vec<RecordAndOffset>,
}

/// The blocking half of a batch: decoding and writing. Moved into a blocking thread for the
/// duration of a batch and back.
struct BatchWriter {
    topic: String,
    decoder: RowDecoder,
    sink: Box<dyn Sink>,
    max_records_per_file: usize,
    on_bad_record: BadRecordPolicy,
}

#[derive(Default)]
struct BatchOutput {
    rows: u64,
    bad: Vec<BadRecordEntry>,
}

impl BatchWriter {
    fn write_batch(
        &mut self,
        batch: u64,
        mut chunks: mpsc::Receiver<Chunk>,
    ) -> Result<BatchOutput, ConsumeError> {
        self.decoder.finish(); // drop rows a failed attempt may have left
        self.sink.begin(batch).map_err(|e| self.sink_error(e))?;
        let mut out = BatchOutput::default();
        while let Some(chunk) = chunks.blocking_recv() {
            for r in chunk.records {
                let payload = r.record.value.as_deref().unwrap_or_default();
                let decoded = if r.record.value.is_none() {
                    Err("the record has no value".to_string())
                } else {
                    self.decoder.decode(payload)
                };
                match decoded {
                    Ok(()) => {
                        out.rows += 1;
                        if self.decoder.rows() >= self.max_records_per_file {
                            let rows = self.decoder.finish();
                            self.sink.write(&rows).map_err(|e| self.sink_error(e))?;
                        }
                    }
                    Err(reason) if self.on_bad_record == BadRecordPolicy::Fail => {
                        return Err(ConsumeError::BadRecord {
                            topic: self.topic.clone(),
                            partition: chunk.partition,
                            offset: r.offset,
                            reason,
                        });
                    }
                    Err(reason) => out.bad.push(BadRecordEntry::new(
                        &self.topic,
                        chunk.partition,
                        r.offset,
                        r.record.value.as_deref(),
                        reason,
                    )),
                }
            }
        }
        if self.decoder.rows() > 0 {
            let rows = self.decoder.finish();
            self.sink.write(&rows).map_err(|e| self.sink_error(e))?;
        }
        Ok(out)
    }

    fn sink_error(&self, source: crate::sink::SinkError) -> ConsumeError {
        ConsumeError::Sink {
            topic: self.topic.clone(),
            source,
        }
    }
}

/// Splits at most `limit` records (0 = no limit) across partitions in proportion to what each
/// has waiting (`next..end`); remainders go to the largest fractions.
pub fn allocate(waiting: &BTreeMap<i32, (i64, i64)>, limit: u64) -> BTreeMap<i32, (i64, i64)> {
    let lag = |(next, end): (i64, i64)| (end - next).max(0) as u64;
    let total: u64 = waiting.values().map(|&r| lag(r)).sum();
    if limit == 0 || total <= limit {
        return waiting
            .iter()
            .filter(|(_, r)| lag(**r) > 0)
            .map(|(&p, &r)| (p, r))
            .collect();
    }
    let mut shares: Vec<(i32, u64, u128)> = waiting
        .iter()
        .map(|(&p, &r)| {
            let exact = limit as u128 * lag(r) as u128;
            (p, (exact / total as u128) as u64, exact % total as u128)
        })
        .collect();
    let mut left = limit - shares.iter().map(|s| s.1).sum::<u64>();
    let mut by_fraction: Vec<usize> = (0..shares.len()).collect();
    by_fraction.sort_by(|&a, &b| shares[b].2.cmp(&shares[a].2).then(a.cmp(&b)));
    for i in by_fraction {
        if left == 0 {
            break;
        }
        shares[i].1 += 1;
        left -= 1;
    }
    shares
        .into_iter()
        .filter(|&(_, take, _)| take > 0)
        .map(|(p, take, _)| {
            let (next, _) = waiting[&p];
            (p, (next, next + take as i64))
        })
        .collect()
}

async fn offsets(
    job: &TopicJob,
    at: OffsetAt,
    policy: RetryPolicy,
) -> Result<BTreeMap<i32, i64>, ConsumeError> {
    let mut out = BTreeMap::new();
    for client in &job.partitions {
        let what = format!("reading offsets of {}/{}", job.topic, client.partition());
        let offset =
            crate::kafka::retrying(policy, job.request_timeout, &what, || client.get_offset(at))
                .await
                .map_err(|error| ConsumeError::GaveUp {
                    topic: job.topic.clone(),
                    error,
                })?;
        out.insert(client.partition(), offset);
    }
    Ok(out)
}

/// Runs one topic until its stream is drained (available-now) or shutdown.
pub async fn run_topic(
    job: TopicJob,
    sink: Box<dyn Sink>,
    shutdown: CancellationToken,
) -> Result<TopicSummary, ConsumeError> {
    let status = Arc::clone(&job.status);
    status.set_consumer_state(RunState::Running);
    let result = consume_topic(job, sink, shutdown).await;
    match &result {
        Ok(_) => status.set_consumer_state(RunState::Finished),
        Err(error) => {
            status.trouble.failed(error);
            status.set_consumer_state(RunState::Failed);
        }
    }
    result
}

async fn consume_topic(
    job: TopicJob,
    sink: Box<dyn Sink>,
    shutdown: CancellationToken,
) -> Result<TopicSummary, ConsumeError> {
    let started = Instant::now();
    let settings = job.settings.clone();
    let policy = settings.retry_policy();
    let mut summary = TopicSummary {
        topic: job.topic.clone(),
        ..TopicSummary::default()
    };
    let (recovered, sink) = recover(&job, sink).await?;
    let mut next: BTreeMap<i32, i64> = recovered
        .last_commit
        .as_ref()
        .map(|c| c.next_offsets.clone())
        .unwrap_or_default();
    let owned: Vec<i32> = job.partitions.iter().map(|c| c.partition()).collect();
    next.retain(|p, _| owned.contains(p));
    if next.len() < owned.len() {
        let at = match settings.starting_offsets {
            StartingOffsets::Earliest => OffsetAt::Earliest,
            StartingOffsets::Latest => OffsetAt::Latest,
        };
        let start = offsets(&job, at, policy).await?;
        for p in &owned {
            next.entry(*p).or_insert(start[p]);
        }
    }
    let mut batch = recovered.last_commit.as_ref().map_or(0, |c| c.batch + 1);
    job.status.set_committed(&next);

    let mut writer = BatchWriter {
        topic: job.topic.clone(),
        decoder: RowDecoder::new(&job.schema),
        sink,
        max_records_per_file: settings.max_records_per_file,
        on_bad_record: settings.on_bad_record,
    };

    if let Some(plan) = recovered.unfinished {
        if still_readable(&job, &plan, policy).await? {
            tracing::info!(topic = %job.topic, batch = plan.batch, ranges = ?plan.ranges, "replaying a batch that did not finish");
            writer = execute(&job, writer, &plan, &mut next, &mut summary).await?;
            batch = plan.batch + 1;
        } else {
            // Its records are gone: what its attempt wrote goes too, and the batch number is
            // planned afresh below.
            writer = discard_attempt(writer, plan.batch).await?;
            batch = plan.batch;
        }
    }

    let trigger = settings.trigger();
    let targets = match trigger {
        Trigger::AvailableNow => Some(latest_offsets(&job, policy).await?),
        Trigger::Every(_) => None,
    };
    let mut status_refresh = tokio::time::interval(STATUS_REFRESH);
    let mut ticker = match trigger {
        Trigger::Every(period) => {
            let mut t = tokio::time::interval(period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            Some(t)
        }
        Trigger::AvailableNow => None,
    };
    loop {
        if let Some(ticker) = &mut ticker {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                _ = status_refresh.tick(), if job.watched => {
                    refresh_latest(&job).await;
                    continue;
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        let earliest = offsets(&job, OffsetAt::Earliest, policy).await?;
        let latest = match &targets {
            Some(targets) => targets.clone(),
            None => latest_offsets(&job, policy).await?,
        };
        for (p, next_p) in next.iter_mut() {
            let range = BrokerRange {
                earliest: earliest[p],
                latest: latest[p],
            };
            *next_p = range.resume_at(&job.topic, *p, *next_p, settings.on_data_loss)?;
        }
        let waiting: BTreeMap<i32, (i64, i64)> = next
            .iter()
            .map(|(&p, &n)| (p, (n, latest[&p].max(n))))
            .collect();
        let ranges = allocate(&waiting, settings.max_offsets_per_trigger);
        if ranges.is_empty() {
            if targets.is_some() {
                break;
            }
            continue;
        }
        let plan = Plan { batch, ranges };
        writer = execute(&job, writer, &plan, &mut next, &mut summary).await?;
        batch += 1;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Reads the checkpoint (after `--overwrite`, and checked against the output; see
/// [`Reconcile`]) on a blocking thread. The sink goes in and comes back.
async fn recover(
    job: &TopicJob,
    mut sink: Box<dyn Sink>,
) -> Result<(Recovered, Box<dyn Sink>), ConsumeError> {
    let Some(checkpoint) = job.checkpoint.clone() else {
        return Ok((Recovered::default(), sink));
    };
    let reconcile = Reconcile {
        topic: job.topic.clone(),
        bad_records_dir: job.bad_records_dir.clone(),
        suffix: job.instance_suffix.clone(),
        overwrite: job.overwrite,
    };
    tokio::task::spawn_blocking(move || {
        let recovered = reconcile.run(&checkpoint, sink.as_mut())?;
        Ok((recovered, sink))
    })
    .await
    .expect("checkpoint recovery panicked")
}

/// Removes what an abandoned attempt of `batch` wrote (the sink's replay clean-up), on a
/// blocking thread; the writer goes in and comes back.
async fn discard_attempt(mut writer: BatchWriter, batch: u64) -> Result<BatchWriter, ConsumeError> {
    tokio::task::spawn_blocking(move || match writer.sink.begin(batch) {
        Ok(()) => Ok(writer),
        Err(e) => Err(writer.sink_error(e)),
    })
    .await
    .expect("sink clean-up panicked")
}

/// Whether an unfinished batch's ranges can still be read as planned. Records gone from
/// below the earliest offset are handled while fetching; a range reaching past the end
/// (the topic was re-created) fails, or with `on_data_loss = "skip"` drops the plan.
async fn still_readable(
    job: &TopicJob,
    plan: &Plan,
    policy: RetryPolicy,
) -> Result<bool, ConsumeError> {
    let earliest = offsets(job, OffsetAt::Earliest, policy).await?;
    let latest = offsets(job, OffsetAt::Latest, policy).await?;
    for (p, &(_, end)) in &plan.ranges {
        let range = BrokerRange {
            earliest: earliest[p],
            latest: latest[p],
        };
        if end > range.latest {
            range.past_end(&job.topic, *p, end, job.settings.on_data_loss)?;
            return Ok(false);
        }
    }
    Ok(true)
}

/// The offsets a partition holds now: `earliest..latest`.
#[derive(Debug, Clone, Copy)]
struct BrokerRange {
    earliest: i64,
    latest: i64,
}

impl BrokerRange {
    /// Where to go on from `next`, the checkpoint's next offset: `next` itself while the
    /// broker still has it (or it is the end), else by `policy`. Below the earliest, retention
    /// removed records; past the latest, the partition is not the one the checkpoint read.
    fn resume_at(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
        policy: DataLossPolicy,
    ) -> Result<i64, ConsumeError> {
        if next < self.earliest {
            handle_data_loss(topic, partition, next, self.earliest, policy)?;
            Ok(self.earliest)
        } else if next > self.latest {
            self.past_end(topic, partition, next, policy)?;
            Ok(self.earliest)
        } else {
            Ok(next)
        }
    }

    fn past_end(
        &self,
        topic: &str,
        partition: i32,
        next: i64,
        policy: DataLossPolicy,
    ) -> Result<(), ConsumeError> {
        match policy {
            DataLossPolicy::Fail => Err(ConsumeError::PastEnd {
                topic: topic.to_string(),
                partition,
                next,
                earliest: self.earliest,
                latest: self.latest,
            }),
            DataLossPolicy::Skip => {
                tracing::error!(%topic, partition, checkpoint_next = next, earliest = self.earliest, latest = self.latest, "the checkpoint is past the partition's end: the topic was re-created or the broker lost data; continuing from the earliest offset (consumer.on_data_loss = \"skip\")");
                Ok(())
            }
        }
    }
}

/// The partitions' end offsets, shown on the status page as they are read.
async fn latest_offsets(
    job: &TopicJob,
    policy: RetryPolicy,
) -> Result<BTreeMap<i32, i64>, ConsumeError> {
    let latest = offsets(job, OffsetAt::Latest, policy).await?;
    job.status.observe_latest_all(&latest);
    Ok(latest)
}

/// One look-up of the end offsets for the status page, without retries: a failure only
/// leaves the page's numbers a little older.
async fn refresh_latest(job: &TopicJob) {
    for client in &job.partitions {
        let latest =
            tokio::time::timeout(job.request_timeout, client.get_offset(OffsetAt::Latest)).await;
        if let Ok(Ok(end)) = latest {
            job.status.observe_latest(client.partition(), end);
        }
    }
}

fn handle_data_loss(
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    policy: DataLossPolicy,
) -> Result<(), ConsumeError> {
    match policy {
        DataLossPolicy::Fail => Err(ConsumeError::DataLoss {
            topic: topic.to_string(),
            partition,
            from,
            to,
        }),
        DataLossPolicy::Skip => {
            tracing::warn!(%topic, partition, from, to, "offsets no longer exist (retention removed them); skipping to the earliest available (consumer.on_data_loss = \"skip\")");
            Ok(())
        }
    }
}

/// Runs one planned batch to its commit, retrying it whole (same ranges) after a fetch or
/// write failure until the retry deadline. The writer goes in and comes back out, because
/// each attempt lends it to a blocking thread.
async fn execute(
    job: &TopicJob,
    mut writer: BatchWriter,
    plan: &Plan,
    next: &mut BTreeMap<i32, i64>,
    summary: &mut TopicSummary,
) -> Result<BatchWriter, ConsumeError> {
    let mut retry = Retry::new(job.settings.retry_policy());
    let started = Instant::now();
    loop {
        let (returned, result) = attempt(job, writer, plan).await;
        writer = returned;
        let mut next_offsets = next.clone();
        for (p, (_, end)) in &plan.ranges {
            next_offsets.insert(*p, *end);
        }
        let result = match result {
            Ok((rows, bad, files)) => {
                let commit = Commit {
                    batch: plan.batch,
                    next_offsets,
                    files,
                    rows,
                    bad_records: bad,
                };
                let durable = commit.clone();
                write_checkpoint(job, move |c| c.write_commit(&durable))
                    .await
                    .map(|()| commit)
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(commit) => {
                let Commit {
                    rows,
                    bad_records: bad,
                    files,
                    next_offsets,
                    ..
                } = commit;
                *next = next_offsets;
                tracing::info!(topic = %job.topic, batch = plan.batch, rows, bad_records = bad, files = files.len(), "batch committed");
                job.status.record_batch(&BatchReport {
                    batch: plan.batch,
                    ranges: &plan.ranges,
                    rows,
                    bad_records: bad,
                    files: files.len() as u64,
                    duration: started.elapsed(),
                });
                job.status.trouble.recovered();
                summary.batches += 1;
                summary.rows += rows;
                summary.bad_records += bad;
                summary.files += files.len() as u64;
                return Ok(writer);
            }
            Err(error) if error.is_retriable() => {
                let Some(wait) = retry.failed() else {
                    return Err(error);
                };
                tracing::warn!(topic = %job.topic, batch = plan.batch, %error, retry_in = ?wait, "batch failed; it is not committed and will be retried");
                job.status
                    .trouble
                    .failed(format!("batch {} failed: {error}", plan.batch));
                tokio::time::sleep(wait).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// One try at a batch: rows written, bad records, and the files (with the writer back).
async fn attempt(
    job: &TopicJob,
    writer: BatchWriter,
    plan: &Plan,
) -> (BatchWriter, Result<(u64, u64, Vec<String>), ConsumeError>) {
    // The plan is durable before any output (rewriting it on a retry or replay is harmless).
    let owned = plan.clone();
    if let Err(error) = write_checkpoint(job, move |c| c.write_plan(&owned)).await {
        return (writer, Err(error));
    }
    let (tx, rx) = mpsc::channel(CHUNK_QUEUE);
    let mut fetchers = Vec::new();
    for (&partition, &(start, end)) in &plan.ranges {
        let client = job
            .partitions
            .iter()
            .find(|c| c.partition() == partition)
            .map(Arc::clone)
            .expect("planned partitions are owned");
        let tx = tx.clone();
        let fetch = RangeFetch {
            topic: job.topic.clone(),
            settings: job.settings.clone(),
            timeout: job.request_timeout,
            status: Arc::clone(&job.status),
        };
        fetchers.push(tokio::spawn(async move {
            fetch.run(&client, start, end, tx).await
        }));
    }
    drop(tx);

    // Decoding and file writing are blocking work: done on a blocking thread.
    let batch = plan.batch;
    let (mut writer, written) = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        let result = writer.write_batch(batch, rx);
        (writer, result)
    })
    .await
    .expect("batch writer panicked");
    let mut fetch_error = None;
    for f in fetchers {
        if let Err(e) = f.await.expect("fetcher panicked") {
            fetch_error.get_or_insert(e);
        }
    }
    // A fetch failure closes the channel early: what was written is incomplete, not committed.
    let result = match (fetch_error, written) {
        (Some(e), _) | (None, Err(e)) => Err(e),
        (None, Ok(output)) => finish(job, &mut writer, batch, output),
    };
    (writer, result)
}

/// One checkpoint write (synced, so on a blocking thread); nothing with no checkpoint
/// (console sink).
async fn write_checkpoint(
    job: &TopicJob,
    write: impl FnOnce(&Checkpoint) -> Result<(), CheckpointError> + Send + 'static,
) -> Result<(), ConsumeError> {
    let Some(checkpoint) = job.checkpoint.clone() else {
        return Ok(());
    };
    tokio::task::spawn_blocking(move || write(&checkpoint))
        .await
        .expect("checkpoint write panicked")
        .map_err(|source| ConsumeError::Checkpoint {
            topic: job.topic.clone(),
            source,
        })
}

/// Writes the batch's bad records and makes the sink's output durable.
fn finish(
    job: &TopicJob,
    writer: &mut BatchWriter,
    batch: u64,
    output: BatchOutput,
) -> Result<(u64, u64, Vec<String>), ConsumeError> {
    let sink_error = |source| ConsumeError::Sink {
        topic: job.topic.clone(),
        source,
    };
    let bad = output.bad.len() as u64;
    if !output.bad.is_empty() {
        match &job.bad_records_dir {
            Some(dir) => write_bad_records(dir, batch, &job.instance_suffix, &output.bad)
                .map_err(sink_error)?,
            None => {
                for b in output.bad.iter().take(BAD_RECORDS_LOGGED) {
                    tracing::warn!(topic = %b.topic, partition = b.partition, offset = b.offset, reason = %b.reason, "bad record skipped");
                }
            }
        }
    }
    let files = writer.sink.commit().map_err(sink_error)?;
    Ok((output.rows, bad, files))
}

/// `_bad_records/batch-<batch><suffix>.jsonl`, written whole or not at all.
fn write_bad_records(
    dir: &std::path::Path,
    batch: u64,
    suffix: &str,
    bad: &[BadRecordEntry],
) -> Result<(), crate::sink::SinkError> {
    let path = dir.join(format!("batch-{batch:08}{suffix}.jsonl"));
    let mut text = Vec::new();
    for b in bad {
        serde_json::to_writer(&mut text, b).expect("bad record entries serialize");
        text.push(b'\n');
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| crate::durable::write_file(&path, &text))
        .map_err(|source| crate::sink::SinkError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// What fetching a partition's range needs besides the partition.
struct RangeFetch {
    topic: String,
    settings: ConsumerSettings,
    timeout: Duration,
    status: Arc<TopicStatus>,
}

impl RangeFetch {
    /// Fetches `[start, end)` of one partition into `out`, in order.
    async fn run(
        &self,
        client: &PartitionClient,
        start: i64,
        end: i64,
        out: mpsc::Sender<Chunk>,
    ) -> Result<(), ConsumeError> {
        let RangeFetch {
            topic,
            settings,
            timeout,
            status,
        } = self;
        let (topic, timeout) = (topic.as_str(), *timeout);
        let partition = client.partition();
        let mut offset = start;
        let mut retry = Retry::new(settings.retry_policy());
        let mut empty_fetches = 0;
        while offset < end {
            let fetched = tokio::time::timeout(
                timeout,
                client.fetch_records(offset, 1..FETCH_MAX_BYTES, FETCH_MAX_WAIT_MS),
            )
            .await;
            let error = match fetched {
                Ok(Ok((mut records, _high_watermark))) => {
                    retry.succeeded();
                    records.retain(|r| r.offset >= offset && r.offset < end);
                    let Some(last) = records.last() else {
                        // Only control records or a compacted gap: a few empty answers in a row
                        // mean the range cannot be read.
                        empty_fetches += 1;
                        if empty_fetches > 10 {
                            return Err(ConsumeError::GaveUp {
                                topic: topic.to_string(),
                                error: format!(
                                    "partition {partition}: the broker returns no records for offsets {offset}..{end}"
                                ),
                            });
                        }
                        continue;
                    };
                    empty_fetches = 0;
                    offset = last.offset + 1;
                    if out.send(Chunk { partition, records }).await.is_err() {
                        return Ok(()); // the writer stopped; its error is reported
                    }
                    continue;
                }
                Ok(Err(ClientError::ServerError {
                    protocol_error: ProtocolError::OffsetOutOfRange,
                    ..
                })) => {
                    let earliest = client
                        .get_offset(OffsetAt::Earliest)
                        .await
                        .unwrap_or(offset);
                    if earliest > offset {
                        handle_data_loss(
                            topic,
                            partition,
                            offset,
                            earliest,
                            settings.on_data_loss,
                        )?;
                        offset = earliest;
                        continue;
                    }
                    let latest = client.get_offset(OffsetAt::Latest).await.unwrap_or(end);
                    if latest < offset {
                        // The topic changed under a planned batch (re-created): nothing to
                        // retry. A rerun replays the plan and applies consumer.on_data_loss.
                        return Err(ConsumeError::TopicChanged {
                            topic: topic.to_string(),
                            partition,
                            offset,
                            earliest,
                            latest,
                        });
                    }
                    "offset out of range".to_string()
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {timeout:?}"),
            };
            let Some(wait) = retry.failed() else {
                return Err(ConsumeError::GaveUp {
                    topic: topic.to_string(),
                    error: format!("fetching partition {partition} at offset {offset}: {error}"),
                });
            };
            tracing::warn!(%topic, partition, offset, %error, retry_in = ?wait, "fetch failed; retrying");
            status.trouble.failed(format!(
                "fetching partition {partition} at offset {offset} failed: {error}"
            ));
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(parts: &[(i32, i64, i64)]) -> BTreeMap<i32, (i64, i64)> {
        parts.iter().map(|&(p, n, e)| (p, (n, e))).collect()
    }

    #[test]
    fn takes_everything_under_the_limit() {
        let w = waiting(&[(0, 0, 10), (1, 5, 5), (2, 3, 8)]);
        assert_eq!(allocate(&w, 100), waiting(&[(0, 0, 10), (2, 3, 8)]));
        assert_eq!(allocate(&w, 0), waiting(&[(0, 0, 10), (2, 3, 8)]));
    }

    #[test]
    fn splits_the_limit_in_proportion_to_what_waits() {
        // 600, 300, 100 waiting; 100 allowed → 60, 30, 10.
        let w = waiting(&[(0, 0, 600), (1, 1000, 1300), (2, 0, 100)]);
        assert_eq!(
            allocate(&w, 100),
            waiting(&[(0, 0, 60), (1, 1000, 1030), (2, 0, 10)])
        );
        // Remainders go to the largest fractions and the total is exact.
        let w = waiting(&[(0, 0, 1), (1, 0, 1), (2, 0, 1)]);
        let a = allocate(&w, 2);
        assert_eq!(a.values().map(|(s, e)| e - s).sum::<i64>(), 2);
        let w = waiting(&[(0, 0, 7), (1, 0, 7), (2, 0, 7)]);
        let a = allocate(&w, 10);
        assert_eq!(a.values().map(|(s, e)| e - s).sum::<i64>(), 10);
        assert!(a.values().all(|(s, e)| (3..=4).contains(&(e - s))));
    }
}
