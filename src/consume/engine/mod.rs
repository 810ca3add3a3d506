//! One topic's micro-batch loop: wait for the trigger (a period, `0s` = continuous, or
//! available-now), plan the next offset ranges, fetch the partitions concurrently, and have
//! the topic's file worker decode, write and commit.
//!
//! * [`plan`]: what the next batch reads (broker offsets, data loss, the record limit).
//! * [`fetch`]: the async half of a batch, Kafka → a bounded channel of chunks.
//! * [`batch`]: the blocking half, chunks → Arrow → sink files, bad records, checkpoint.
//! * [`worker`]: the thread the blocking half runs on, one per topic, and its requests.
//!
//! A batch: the loop plans it and hands it to the worker ([`batch::BatchOrder`]), which
//! writes the plan durably, then decodes and writes the records while [`fetch`] brings them,
//! then makes the output durable and writes the commit. A retriable failure (the disk, the
//! broker) retries the same plan; anything else ends the topic with its error. Shutdown is
//! looked at between batches: a batch that started runs to its commit.

mod batch;
mod fetch;
mod plan;
mod worker;

pub use batch::TopicFiles;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rskafka::client::partition::{OffsetAt, PartitionClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checkpoint::{Commit, Plan};
use super::lock::Ownership;
use super::{ConsumeError, TopicSummary};
use crate::backoff::{Retry, RetryError};
use crate::kafka::fetch::PartitionReader;
use crate::settings::{ConsumerSettings, StartingOffsets, Trigger};
use crate::status::{BatchReport, RunState, TopicStatus};
use batch::{BatchOrder, BatchOutcome, Resumption};
use fetch::fetch_plan;
use plan::{latest_offsets, next_ranges, offsets, refresh_latest, still_readable};
use worker::FileWorker;

/// Fetched chunks queued for the file worker per batch: bounds memory while fetching runs
/// ahead of writing.
const CHUNK_QUEUE: usize = 2;
/// How often latest offsets are looked up between batches while a status page watches, so
/// its lag is current even with a long trigger interval.
const STATUS_REFRESH: Duration = Duration::from_secs(2);
/// How long a continuous (`0s`) loop waits before looking again after a look found no record
/// waiting: short, so a record arriving then waits at most this long plus one batch, and long
/// enough that an idle topic costs one end-offset look-up per partition per pause (50 a
/// second) and next to no CPU, instead of a loop spinning on the broker.
const IDLE_PAUSE: Duration = Duration::from_millis(20);

/// Everything one topic's loop needs on the async side (its files go to its worker).
pub struct TopicJob {
    pub topic: String,
    /// Offset look-ups (rskafka).
    pub partitions: Vec<Arc<PartitionClient>>,
    /// Fetches (our own reader), one per owned partition, kept connected between batches.
    pub readers: BTreeMap<i32, Arc<tokio::sync::Mutex<PartitionReader>>>,
    pub settings: ConsumerSettings,
    pub request_timeout: Duration,
    pub status: Arc<TopicStatus>,
    /// Whether a status server shows `status` (then latest offsets are refreshed between
    /// batches).
    pub watched: bool,
    /// The locks that make this job the checkpoint's only writer: never read, held while the
    /// job lives (dropping them releases them).
    pub _locks: Option<Ownership>,
    /// Shutdown: ends a wait between retries (see [`run_topic`]), never an attempt.
    pub stop: CancellationToken,
}

/// Where a topic stands between batches.
struct Progress {
    /// The next offset to read of every owned partition.
    next: BTreeMap<i32, i64>,
    /// The number of the next batch.
    batch: u64,
    summary: TopicSummary,
}

/// Runs one topic until its stream is drained (available-now) or shutdown.
pub async fn run_topic(
    job: TopicJob,
    files: TopicFiles,
    shutdown: CancellationToken,
) -> Result<TopicSummary, ConsumeError> {
    let job = TopicJob {
        stop: shutdown.clone(),
        ..job
    };
    let status = Arc::clone(&job.status);
    status.set_consumer_state(RunState::Running);
    let result = consume_topic(&job, files, shutdown).await;
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
    job: &TopicJob,
    files: TopicFiles,
    shutdown: CancellationToken,
) -> Result<TopicSummary, ConsumeError> {
    let started = Instant::now();
    let mut worker = FileWorker::start(files)?;
    let mut progress = resume(job, &mut worker).await?;
    run_batches(job, &mut worker, &mut progress, &shutdown).await?;
    worker.finish().await;
    progress.summary.elapsed = started.elapsed();
    Ok(progress.summary)
}

/// Where the checkpoint left the topic (partitions it has not seen start at
/// `consumer.starting_offsets`), after replaying the batch it left unfinished.
async fn resume(job: &TopicJob, worker: &mut FileWorker) -> Result<Progress, ConsumeError> {
    let policy = job.settings.retry_policy();
    let Resumption {
        next_offsets: mut next,
        next_batch,
        unfinished,
    } = worker.recover().await?;
    let owned: Vec<i32> = job.partitions.iter().map(|c| c.partition()).collect();
    next.retain(|p, _| owned.contains(p));
    if next.len() < owned.len() {
        let at = match job.settings.starting_offsets {
            StartingOffsets::Earliest => OffsetAt::Earliest,
            StartingOffsets::Latest => OffsetAt::Latest,
        };
        let start = offsets(job, at, policy).await?;
        for p in &owned {
            next.entry(*p).or_insert(start[p]);
        }
    }
    job.status.set_committed(&next);
    let mut progress = Progress {
        next,
        batch: next_batch,
        summary: TopicSummary {
            topic: job.topic.clone(),
            ..TopicSummary::default()
        },
    };
    let Some(plan) = unfinished else {
        return Ok(progress);
    };
    if still_readable(job, &plan, policy).await? {
        tracing::info!(topic = %job.topic, batch = plan.batch, ranges = ?plan.ranges, "replaying a batch that did not finish");
        execute(job, worker, &plan, &mut progress).await?;
    } else {
        // Its records are gone: what its attempt wrote goes too, and the batch number is
        // planned afresh.
        worker.discard(plan.batch).await?;
        progress.batch = plan.batch;
    }
    Ok(progress)
}

/// The trigger loop: a batch per tick, back to back with `0s` (continuous), or back to back
/// until the targets with available-now; until shutdown or, with available-now, nothing waits.
async fn run_batches(
    job: &TopicJob,
    worker: &mut FileWorker,
    progress: &mut Progress,
    shutdown: &CancellationToken,
) -> Result<(), ConsumeError> {
    let policy = job.settings.retry_policy();
    let trigger = job.settings.trigger();
    let targets = match trigger {
        Trigger::AvailableNow => Some(latest_offsets(job, policy).await?),
        Trigger::Every(_) | Trigger::Continuous => None,
    };
    let mut pacer = Pacer::new(trigger);
    loop {
        if !pacer.wait(job, shutdown).await || shutdown.is_cancelled() {
            break;
        }
        // Look-ups only read: on shutdown (e.g. while they retry a broker that is down) they
        // are dropped, with no batch in flight.
        let latest = match &targets {
            Some(targets) => targets.clone(),
            None => match until(shutdown, latest_offsets(job, policy)).await {
                Some(latest) => latest?,
                None => break,
            },
        };
        // Caught up: nothing to plan (and no retention check needed: nothing below `latest`
        // is still to be read), which spares an idle continuous loop half its look-ups.
        let ranges = if progress.next == latest {
            BTreeMap::new()
        } else {
            match until(
                shutdown,
                next_ranges(job, &mut progress.next, &latest, policy),
            )
            .await
            {
                Some(ranges) => ranges?,
                None => break,
            }
        };
        pacer.found(!ranges.is_empty());
        if ranges.is_empty() {
            if targets.is_some() {
                break;
            }
            continue;
        }
        let plan = Plan {
            batch: progress.batch,
            ranges,
        };
        execute(job, worker, &plan, progress).await?;
    }
    Ok(())
}

/// When [`run_batches`] looks for its next batch, by trigger.
enum Pacer {
    /// A period: on the ticker's beat; between beats, the status page's lag refresh.
    Every {
        ticker: tokio::time::Interval,
        status_refresh: tokio::time::Interval,
    },
    /// `0s`: at once after a batch, or [`IDLE_PAUSE`] after a look that found nothing (each
    /// look also refreshes the status page's lag).
    Continuous { idle: bool },
    /// available-now: back to back until the targets.
    AvailableNow,
}

impl Pacer {
    fn new(trigger: Trigger) -> Self {
        match trigger {
            Trigger::Every(period) => {
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                Self::Every {
                    ticker,
                    status_refresh: tokio::time::interval(STATUS_REFRESH),
                }
            }
            Trigger::Continuous => Self::Continuous { idle: false },
            Trigger::AvailableNow => Self::AvailableNow,
        }
    }

    /// Waits for the next look; `false` once `shutdown` is cancelled instead.
    async fn wait(&mut self, job: &TopicJob, shutdown: &CancellationToken) -> bool {
        match self {
            Self::Every {
                ticker,
                status_refresh,
            } => loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = ticker.tick() => return true,
                    _ = status_refresh.tick(), if job.watched => refresh_latest(job).await,
                }
            },
            Self::Continuous { idle: true } => until(shutdown, tokio::time::sleep(IDLE_PAUSE))
                .await
                .is_some(),
            Self::Continuous { idle: false } | Self::AvailableNow => true,
        }
    }

    /// What the last look found: `true` when it planned a batch.
    fn found(&mut self, batch: bool) {
        if let Self::Continuous { idle } = self {
            *idle = !batch;
        }
    }
}

/// `work`'s result, or `None` once `shutdown` is cancelled first.
async fn until<T>(shutdown: &CancellationToken, work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        done = work => Some(done),
    }
}

/// Runs one planned batch to its commit, retrying it whole (same ranges) after a fetch or
/// write failure until the retry deadline, or until a shutdown stops the wait (the batch is
/// then not committed: a rerun replays it).
async fn execute(
    job: &TopicJob,
    worker: &mut FileWorker,
    plan: &Plan,
    progress: &mut Progress,
) -> Result<(), ConsumeError> {
    let mut retry = Retry::new(job.settings.retry_policy()).stop_on(job.stop.clone());
    let started = Instant::now();
    let mut next_offsets = progress.next.clone();
    for (p, (_, end)) in &plan.ranges {
        next_offsets.insert(*p, *end);
    }
    let what = format!("topic {}: batch {} (not committed)", job.topic, plan.batch);
    loop {
        let error = match attempt(job, worker, plan, &next_offsets).await {
            Ok(commit) => {
                committed(job, plan, commit, started.elapsed(), progress);
                return Ok(());
            }
            Err(error) => error,
        };
        job.status
            .trouble
            .failed(format!("batch {} failed: {error}", plan.batch));
        retry
            .pause(&what, error, ConsumeError::is_retriable)
            .await
            .map_err(|ended| match ended {
                RetryError::Stopped(last) => ConsumeError::Stopped {
                    topic: job.topic.clone(),
                    batch: plan.batch,
                    source: Box::new(last),
                },
                other => other.into_last(),
            })?;
    }
}

/// One try at a batch: the worker writes while the ranges are fetched. A fetch error
/// outranks the worker's outcome (the worker only saw the records stop).
async fn attempt(
    job: &TopicJob,
    worker: &mut FileWorker,
    plan: &Plan,
    next_offsets: &BTreeMap<i32, i64>,
) -> Result<Commit, ConsumeError> {
    let (chunks_in, chunks) = mpsc::channel(CHUNK_QUEUE);
    let order = BatchOrder {
        plan: plan.clone(),
        next_offsets: next_offsets.clone(),
        chunks,
    };
    let pending = worker.submit(order).await;
    let fetched = fetch_plan(job, plan, chunks_in).await;
    let outcome = worker.outcome(pending).await;
    match (fetched, outcome) {
        (Err(error), _) | (Ok(()), BatchOutcome::Failed(error)) => Err(error),
        (Ok(()), BatchOutcome::Committed(commit)) => Ok(commit),
        (Ok(()), BatchOutcome::Abandoned) => {
            unreachable!("a fetch that succeeded ends its records with `Complete`")
        }
    }
}

/// Takes a committed batch into the topic's progress, status and log.
fn committed(
    job: &TopicJob,
    plan: &Plan,
    commit: Commit,
    duration: Duration,
    progress: &mut Progress,
) {
    let Commit {
        batch,
        next_offsets,
        files,
        rows,
        bad_records,
    } = commit;
    tracing::info!(topic = %job.topic, batch, rows, bad_records, files = files.len(), duration_ms = duration.as_millis() as u64, "batch committed");
    job.status.record_batch(&BatchReport {
        batch,
        ranges: &plan.ranges,
        rows,
        bad_records,
        files: files.len() as u64,
        duration,
    });
    job.status.trouble.recovered();
    let summary = &mut progress.summary;
    summary.batches += 1;
    summary.rows += rows;
    summary.bad_records += bad_records;
    summary.files += files.len() as u64;
    progress.next = next_offsets;
    progress.batch = batch + 1;
}
