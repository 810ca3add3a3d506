//! One source from start to end, in three phases:
//!
//! 1. [`prepare`]: a client per partition of the topic, and where the stream starts: offset 0,
//!    or with `--resume` the [`ResumePoint`] that the topic's tail gives.
//! 2. [`Writers::spawn`]: one [`PartitionWriter`] task per partition, fed by a bounded queue,
//!    and the source's [`Window`] of unacknowledged records they share with the reader.
//! 3. [`Pump::run`]: reads the stream, turns each line into a record or a bad record, skips what
//!    `--resume` found already written, and hands the rest to their partition's writer once
//!    the window admits them.
//!
//! Then the writers flush what they hold ([`Writers::finish`]) and the run ends with a
//! [`SourceOutcome`]: the summary line, and the first error if the source failed. A run that is
//! stopped (shutdown, or another source failed) ends like one whose stream ended: every record
//! read is written and acknowledged first, so `--resume` continues exactly after it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rskafka::client::Client;
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::bad_records::BadRecords;
use super::plan::{SourcePlan, compression};
use super::record::{BadRecord, Prepared, RecordShaper};
use super::resume::{self, ResumePoint};
use super::source::{NdjsonReader, ReaderConfig, StreamItem};
use super::window::Window;
use super::writer::{PartitionWriter, WriterContext};
use super::{ProduceError, SourceSummary};
use crate::kafka::{retry_call, retry_setup};
use crate::settings::Settings;
use crate::status::{RunState, SourceCounters, TopicStatus};

/// Records the reader hands to a partition's writer at once: one queue operation, and at most
/// one wake of the writer's task, per chunk instead of per record (per record those were about
/// a sixth of the producer's CPU, BENCHMARKS.md). A chunk goes early when the reader is about
/// to wait (for the API or for the window), so a slow stream is not held back.
const CHUNK: usize = 256;

/// Chunks queued per partition between the reader and its writer: room for a little more
/// than one full batch of small records even when every chunk went early with one record, so
/// a batch can gather while the previous one is in flight. The records held in all queues
/// together are bounded by the window (`producer.max_pending_records`), not by this.
const PARTITION_QUEUE: usize = 16 * 1024;

/// What became of a chunk offered to its writer's queue without waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandOver {
    /// Queued (or there was nothing to queue).
    Queued,
    /// The queue is full: the chunk stays with the reader.
    Full,
    /// The writer has failed: its records cannot be written (its error says why).
    Closed,
}

/// One source's run: what to read, and where its numbers go.
pub struct SourceRun {
    pub plan: SourcePlan,
    pub resume: bool,
    pub stats: Arc<SourceCounters>,
    /// The topic's live status (the partitions' end offsets as acknowledged).
    pub topic: Arc<TopicStatus>,
}

/// How one source's run ended.
pub struct SourceOutcome {
    pub summary: SourceSummary,
    /// The error that failed the source, if it failed.
    pub result: Result<(), ProduceError>,
}

/// Runs one source to the end of its stream, or until `stop`; the summary comes back even
/// when it failed.
pub async fn produce_source(
    settings: &Settings,
    client: &Client,
    run: SourceRun,
    stop: CancellationToken,
) -> SourceOutcome {
    let started = Instant::now();
    // Setup only reads from the broker: stopping in the middle of it leaves nothing behind.
    let prepared = tokio::select! {
        _ = stop.cancelled() => None,
        prepared = prepare(settings, client, &run) => Some(prepared),
    };
    let (resumed_at, result) = match prepared {
        None => (None, Ok(())),
        Some(Err(error)) => (None, Err(error)),
        Some(Ok(setup)) => {
            let resumed_at = run.resume.then_some(setup.point.start);
            (
                resumed_at,
                produce_prepared(settings, &run, setup, stop).await,
            )
        }
    };
    let SourceRun { plan, stats, .. } = run;
    stats.set_state(if result.is_ok() {
        RunState::Finished
    } else {
        RunState::Failed
    });
    let summary = SourceSummary {
        name: plan.settings.name,
        topic: plan.settings.topic,
        records: stats.records.load(Ordering::Relaxed),
        bad: stats.bad.load(Ordering::Relaxed),
        skipped: stats.skipped.load(Ordering::Relaxed),
        bytes: stats.bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        resumed_at,
        failed: result.is_err(),
    };
    SourceOutcome { summary, result }
}

/// Phases 2 and 3, then the flush. The reading side's error (a bad record in `fail` mode, an
/// API that gave up) comes first; a writer's failure stops the reader without an error of its
/// own, so then the writer's error is the one.
async fn produce_prepared(
    settings: &Settings,
    run: &SourceRun,
    setup: Setup,
    stop: CancellationToken,
) -> Result<(), ProduceError> {
    let Setup { clients, point } = setup;
    let mut writers = Writers::spawn(settings, run, clients, &point.log_ends).await;
    let producer = &settings.producer;
    let source = &run.plan.settings;
    let reader = NdjsonReader::new(
        ReaderConfig {
            source_name: source.name.clone(),
            url: run.plan.url.clone(),
            retry: producer.retry_policy(),
            idle_timeout: producer.api_idle_timeout(),
            max_line_bytes: producer.max_line_bytes,
        },
        point.start,
        stop,
    )
    .reporting_to(Arc::clone(&run.stats));
    let mut pump = Pump {
        reader,
        shaper: RecordShaper::new(source.key.clone(), run.plan.partitions),
        skip: run.resume.then_some(point),
        bad: BadRecords::new(&source.name, producer.on_bad_record, Arc::clone(&run.stats)),
        max_line_bytes: producer.max_line_bytes,
        stats: Arc::clone(&run.stats),
    };
    let read = pump.run(&mut writers).await;
    pump.bad.finish();
    let written = writers.finish().await;
    read.and(written)
}

/// What setup found: a client per partition, and where to start.
struct Setup {
    clients: Vec<PartitionClient>,
    point: ResumePoint,
}

/// Phase 1: the partitions' clients and the starting point (see the module docs).
async fn prepare(
    settings: &Settings,
    client: &Client,
    run: &SourceRun,
) -> Result<Setup, ProduceError> {
    let source = &run.plan.settings;
    let (source_name, topic) = (&source.name, &source.topic);
    let setup_error = |source| ProduceError::Setup {
        source_name: source_name.clone(),
        topic: topic.clone(),
        source: Box::new(source),
    };
    let (policy, timeout) = (settings.producer.retry_policy(), settings.kafka.timeout());
    let mut clients = Vec::with_capacity(run.plan.partitions as usize);
    for partition in 0..run.plan.partitions {
        let what = format!("reaching the leader of {}/{partition}", source.topic);
        let client = retry_call(policy, timeout, &what, || {
            client.partition_client(&source.topic, partition, UnknownTopicHandling::Error)
        })
        .await
        .map_err(setup_error)?;
        clients.push(client);
    }
    let point = if run.resume {
        // The window spans this many stream offsets; `--resume` looks back as far.
        let window_span = settings.producer.max_pending_records as u64;
        let what = format!("looking up what {} already holds", source.topic);
        let point = retry_setup(policy, &what, || {
            resume::find(&clients, &source.name, window_span, timeout)
        })
        .await
        .map_err(setup_error)?;
        tracing::info!(source = %source.name, start = point.start, heads = ?point.heads, "resuming");
        point
    } else {
        let mut log_ends = Vec::with_capacity(clients.len());
        for c in &clients {
            let what = format!(
                "reading the end offset of {}/{}",
                source.topic,
                c.partition()
            );
            let end = retry_call(policy, timeout, &what, || c.get_offset(OffsetAt::Latest));
            log_ends.push(end.await.map_err(setup_error)?);
        }
        ResumePoint {
            start: 0,
            heads: vec![None; clients.len()],
            log_ends,
        }
    };
    for (partition, &end) in point.log_ends.iter().enumerate() {
        run.topic.observe_latest(partition as i32, end);
    }
    Ok(Setup { clients, point })
}

/// Phase 2: the partition writers of one source, their queues and their shared window.
struct Writers {
    queues: Vec<mpsc::Sender<Vec<Prepared>>>,
    /// Per partition: records the window admitted, not yet handed to the writer.
    chunks: Vec<Vec<Prepared>>,
    tasks: Vec<JoinHandle<Result<(), ProduceError>>>,
    /// Cancelled when a writer fails: the reader stops feeding the others.
    failed: CancellationToken,
    window: Arc<Window>,
}

impl Writers {
    /// One writer task per partition client, starting from the partition's `log_ends`.
    async fn spawn(
        settings: &Settings,
        run: &SourceRun,
        clients: Vec<PartitionClient>,
        log_ends: &[i64],
    ) -> Self {
        let producer = &settings.producer;
        let source = &run.plan.settings;
        let window = Arc::new(Window::new(producer.max_pending_records as u64));
        let context = Arc::new(WriterContext {
            source_name: source.name.clone(),
            topic: source.topic.clone(),
            compression: compression(producer.compression),
            linger: producer.linger(),
            batch_max_bytes: producer.batch_max_bytes,
            batch_limit: run.plan.batch_limit,
            retry: producer.retry_policy(),
            on_bad_record: producer.on_bad_record,
            request_timeout: settings.kafka.timeout(),
            stats: Arc::clone(&run.stats),
            topic_status: Arc::clone(&run.topic),
            window: Arc::clone(&window),
        });
        let failed = CancellationToken::new();
        let mut queues = Vec::with_capacity(clients.len());
        let mut tasks = Vec::with_capacity(clients.len());
        for (client, &log_end) in clients.into_iter().zip(log_ends) {
            let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
            let writer = PartitionWriter::new(Arc::clone(&context), client, log_end);
            let failed = failed.clone();
            tasks.push(tokio::spawn(async move {
                let result = writer.run(rx).await;
                if result.is_err() {
                    failed.cancel();
                }
                result
            }));
            queues.push(tx);
        }
        Self {
            chunks: queues.iter().map(|_| Vec::with_capacity(CHUNK)).collect(),
            queues,
            tasks,
            failed,
            window,
        }
    }

    /// Hands `record` to its partition's writer (in a chunk) once the window admits it;
    /// `false` if a writer failed (its error comes from [`Self::finish`]).
    ///
    /// Once per record: the common case (the window admits it, the chunk is not full) takes
    /// no `select!` and no await.
    async fn send(&mut self, record: Prepared) -> bool {
        if self.failed.is_cancelled() {
            return false;
        }
        // The writer acknowledges it.
        if !self.window.try_acquire(record.offset) {
            // Only records the writers hold can free the window: hand over what waits here.
            if !self.flush().await {
                return false;
            }
            tokio::select! {
                biased;
                _ = self.failed.cancelled() => return false,
                () = self.window.acquire(record.offset) => {}
            }
        }
        let partition = record.partition as usize;
        self.chunks[partition].push(record);
        if self.chunks[partition].len() < CHUNK {
            return true;
        }
        match self.try_hand_over(partition) {
            HandOver::Queued => true,
            HandOver::Closed => false,
            // Before waiting on this queue, the other partitions' records go.
            HandOver::Full => self.flush().await,
        }
    }

    /// Hands every chunk to its writer: before the reader waits for more of the stream,
    /// before the window is waited on, and at the end. First whatever fits at once, so one
    /// partition's full queue (its leader down, say) holds back no other partition's
    /// records; then it waits for the full ones. `false` if a writer failed; the other
    /// writers still get theirs.
    async fn flush(&mut self) -> bool {
        let mut healthy = true;
        for partition in 0..self.chunks.len() {
            healthy &= self.try_hand_over(partition) != HandOver::Closed;
        }
        for partition in 0..self.chunks.len() {
            if !self.chunks[partition].is_empty() {
                let chunk = self.take_chunk(partition);
                healthy &= self.queues[partition].send(chunk).await.is_ok();
            }
        }
        healthy
    }

    /// Queues `partition`'s chunk without waiting; one that does not fit stays here.
    fn try_hand_over(&mut self, partition: usize) -> HandOver {
        if self.chunks[partition].is_empty() {
            return HandOver::Queued;
        }
        let chunk = self.take_chunk(partition);
        match self.queues[partition].try_send(chunk) {
            Ok(()) => HandOver::Queued,
            Err(mpsc::error::TrySendError::Full(chunk)) => {
                self.chunks[partition] = chunk;
                HandOver::Full
            }
            Err(mpsc::error::TrySendError::Closed(_)) => HandOver::Closed,
        }
    }

    /// Takes `partition`'s chunk. A full one is replaced by room for the next full one; a
    /// partial one (the stream is slow, or the reader is about to wait) gives back its spare
    /// room, since the queues may hold many such chunks.
    fn take_chunk(&mut self, partition: usize) -> Vec<Prepared> {
        let full = self.chunks[partition].len() >= CHUNK;
        let next = if full {
            Vec::with_capacity(CHUNK)
        } else {
            Vec::new()
        };
        let mut chunk = std::mem::replace(&mut self.chunks[partition], next);
        if chunk.capacity() > 2 * chunk.len() {
            chunk.shrink_to_fit();
        }
        chunk
    }

    /// Closes the queues, lets every writer write and acknowledge what it holds, and returns
    /// the first writer error.
    async fn finish(mut self) -> Result<(), ProduceError> {
        // Whatever the reader still holds goes to every writer that has not failed.
        self.flush().await;
        drop(self.queues);
        let mut first_error = None;
        for task in self.tasks {
            if let Err(error) = task.await.expect("partition writer panicked") {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Phase 3: the read loop of one source.
struct Pump {
    reader: NdjsonReader,
    shaper: RecordShaper,
    /// With `--resume`: what the topic already holds.
    skip: Option<ResumePoint>,
    bad: BadRecords,
    max_line_bytes: usize,
    stats: Arc<SourceCounters>,
}

impl Pump {
    /// Reads until the stream ends, the reader is stopped, or a writer fails (`Ok`: its error
    /// is the writers' to report), or until a failure of the reading side (`Err`).
    async fn run(&mut self, writers: &mut Writers) -> Result<(), ProduceError> {
        loop {
            // A failed writer stops the reading at once, even among lines already received.
            if writers.failed.is_cancelled() {
                return Ok(());
            }
            let item = match self.reader.next_buffered() {
                Some(item) => item,
                None => {
                    // About to wait for the stream: the writers get what was read so far.
                    if !writers.flush().await {
                        return Ok(());
                    }
                    let item = tokio::select! {
                        biased;
                        _ = writers.failed.cancelled() => return Ok(()),
                        item = self.reader.next_item() => item?,
                    };
                    match item {
                        Some(item) => item,
                        None => return Ok(()),
                    }
                }
            };
            let line = match item {
                StreamItem::Line(line) => line,
                StreamItem::TooLong { offset, seen } => {
                    let limit = self.max_line_bytes;
                    self.bad
                        .found(offset, BadRecord::LineTooLong { seen, limit }, None)?;
                    continue;
                }
            };
            let record = match self.shaper.shape(line.offset, &line.bytes) {
                Ok(record) => record,
                Err(reason) => {
                    self.bad.found(line.offset, reason, Some(&line.bytes))?;
                    continue;
                }
            };
            if let Some(point) = &self.skip
                && point.already_written(record.partition, record.offset)
            {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if !writers.send(record).await {
                return Ok(());
            }
        }
    }
}
