//! `produce`: reads the NDJSON streams the API serves and writes every record to its Kafka
//! topic, keyed and partitioned like the Java client, at least once and without duplicates.
//!
//! Per source: a reader ([`source`]) turns the HTTP stream into numbered lines, [`record`] makes
//! each a keyed record for its partition, and one writer task per partition ([`writer`])
//! batches and produces, in order. A window of unacknowledged records bounds memory and makes
//! `--resume` ([`resume`]) cheap. Sources run concurrently in one process.

mod lines;
mod progress;
pub mod record;
pub mod resume;
mod source;
mod url;
mod window;
mod writer;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use record::{BadRecord, HEADER_SOURCE, HEADER_SOURCE_OFFSET, Prepared, RecordShaper};
pub use source::{Line, NdjsonReader, SourceError, StreamItem};
pub use url::StreamUrl;

use crate::admin::{self, AdminError};
use crate::backoff::Retry;
use crate::kafka::{KafkaClient, KafkaError, validate_topic_name};
use crate::settings::{BadRecordPolicy, CompressionCodec, Settings, SourceSettings};
use crate::status::{RunState, SourceCounters, Status, TopicStatus};
use resume::ResumePoint;
use source::ReaderConfig;
use window::Window;
use writer::{PartitionWriter, WriterContext};

/// Records queued per partition between the reader and its writer: a little more than one
/// full batch of small records, so a batch can gather while the previous one is in flight.
const PARTITION_QUEUE: usize = 16 * 1024;

/// Bad records logged one by one before the log switches to periodic counts.
const BAD_RECORDS_LOGGED: u64 = 10;
const BAD_RECORD_SUMMARY_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(
        "unknown source {name:?}; configured sources: {configured} (add a [[producer.sources]] table to the config to define another)"
    )]
    UnknownSource { name: String, configured: String },
    #[error("no source named: give source names (configured: {configured}) or --all")]
    NoSources { configured: String },
    #[error(
        "source {source_name}: {url:?} is not a usable URL: {why} (expected http://HOST:PORT/PATH in producer.api_url or the source's url)"
    )]
    BadUrl {
        source_name: String,
        /// Shown with what looks like a password or query value masked.
        url: String,
        why: String,
    },
    #[error(
        "topic {topic:?} (source {source_name}) does not exist and brokers do not create topics: create it with `factorypal admin create-topic {topic}`, or pass --create-topics"
    )]
    MissingTopic { topic: String, source_name: String },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(
        "source {source_name}: bad record at source-offset {offset}: {reason} (producer.on_bad_record = \"fail\"; set it to \"skip\" to count and skip bad records)"
    )]
    BadRecord {
        source_name: String,
        offset: u64,
        reason: BadRecord,
    },
    #[error(
        "source {source_name}: the broker rejected a batch of {records} records ({bytes} bytes) for {topic}/{partition}: {error}"
    )]
    Rejected {
        source_name: String,
        topic: String,
        partition: i32,
        records: usize,
        bytes: usize,
        error: String,
    },
    #[error(
        "source {source_name}: gave up writing to {topic}/{partition} after {attempts} attempts over {outage:?} (producer.retry_deadline): {error}; is the broker up?"
    )]
    GaveUp {
        source_name: String,
        topic: String,
        partition: i32,
        attempts: u32,
        outage: Duration,
        error: String,
    },
    #[error("source {source_name}: cannot prepare {topic}: {error}")]
    Setup {
        source_name: String,
        topic: String,
        error: String,
    },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl ProduceError {
    /// Whether the error is the user's request (exit code 2) rather than a failure (1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::UnknownSource { .. }
                | Self::NoSources { .. }
                | Self::BadUrl { .. }
                | Self::Kafka(KafkaError::InvalidTopicName { .. })
        )
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, Default)]
pub struct ProduceOptions {
    pub sources: Vec<String>,
    pub all: bool,
    pub create_topics: bool,
    pub resume: bool,
}

/// The end-of-run line of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSummary {
    pub name: String,
    pub topic: String,
    pub records: u64,
    pub bad: u64,
    pub skipped: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub resumed_at: Option<u64>,
    pub failed: bool,
}

impl fmt::Display for SourceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{}: {} records to {} ({} bad, {} bytes) in {:.2} s, {:.0} records/s",
            self.name,
            self.records,
            self.topic,
            self.bad,
            self.bytes,
            secs,
            self.records as f64 / secs.max(1e-9),
        )?;
        if let Some(start) = self.resumed_at {
            write!(
                f,
                "; resumed at source-offset {start}, {} already in the topic",
                self.skipped
            )?;
        }
        if self.failed {
            write!(f, "; FAILED")?;
        }
        Ok(())
    }
}

/// One source, resolved against the settings.
#[derive(Debug, Clone)]
struct SourcePlan {
    settings: SourceSettings,
    url: StreamUrl,
    partitions: i32,
}

/// Produces the chosen sources concurrently until their streams end (or shutdown), prints
/// one summary line per source, and fails if any source failed.
pub async fn run(
    settings: &Settings,
    options: &ProduceOptions,
    status: &Status,
    shutdown: CancellationToken,
) -> Result<Vec<SourceSummary>, ProduceError> {
    let mut plans = plan(settings, options)?;
    let kafka = KafkaClient::connect(&settings.kafka).await?;
    for plan in &mut plans {
        plan.partitions = ensure_topic(&kafka, settings, plan, options.create_topics).await?;
    }
    // A client of our own for writing: rskafka's internal retries would resend a produce
    // request that may already be written; ours check first (see `writer`).
    let client = Arc::new(writing_client(settings).await?);

    let stats: Vec<Arc<SourceCounters>> = plans
        .iter()
        .map(|p| status.source(&p.settings.name, &p.settings.topic))
        .collect();
    let progress_done = CancellationToken::new();
    let progress = progress::spawn(
        plans
            .iter()
            .zip(&stats)
            .map(|(p, s)| (p.settings.name.clone(), Arc::clone(s)))
            .collect(),
        Duration::from_secs_f64(settings.producer.progress_interval),
        progress_done.clone(),
    );

    let mut tasks = Vec::new();
    for (plan, stats) in plans.into_iter().zip(stats) {
        let settings = settings.clone();
        let client = Arc::clone(&client);
        let shutdown = shutdown.clone();
        let resume = options.resume;
        let topic = status.topic(&plan.settings.topic);
        tasks.push(tokio::spawn(async move {
            let source = SourceRun {
                plan,
                resume,
                stats,
                topic,
            };
            produce_source(&settings, &client, source, shutdown).await
        }));
    }
    let mut summaries = Vec::new();
    let mut first_error = None;
    for task in tasks {
        let (summary, result) = task.await.expect("source task panicked");
        summaries.push(summary);
        if let Err(error) = result {
            tracing::error!(%error, "source failed");
            first_error.get_or_insert(error);
        }
    }
    progress_done.cancel();
    let _ = progress.await;
    for summary in &summaries {
        println!("{summary}");
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(summaries),
    }
}

/// Picks the sources and checks everything that needs no network.
fn plan(settings: &Settings, options: &ProduceOptions) -> Result<Vec<SourcePlan>, ProduceError> {
    let configured = &settings.producer.sources;
    let names = || {
        configured
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let chosen: Vec<&SourceSettings> = if options.all {
        configured.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in &options.sources {
            let source = configured.iter().find(|s| &s.name == name).ok_or_else(|| {
                ProduceError::UnknownSource {
                    name: name.clone(),
                    configured: names(),
                }
            })?;
            if !chosen
                .iter()
                .any(|c: &&SourceSettings| c.name == source.name)
            {
                chosen.push(source);
            }
        }
        chosen
    };
    if chosen.is_empty() {
        return Err(ProduceError::NoSources {
            configured: names(),
        });
    }
    chosen
        .into_iter()
        .map(|source| {
            validate_topic_name(&source.topic)?;
            let url = match (&source.url, &source.path) {
                (Some(url), _) => url.clone(),
                (None, Some(path)) => format!(
                    "{}/{}",
                    settings.producer.api_url.trim_end_matches('/'),
                    path.trim_start_matches('/')
                ),
                (None, None) => String::new(), // settings validation rules this out
            };
            let parsed = StreamUrl::parse(&url).map_err(|why| ProduceError::BadUrl {
                source_name: source.name.clone(),
                url: url::redact_unparsed(&url),
                why,
            })?;
            Ok(SourcePlan {
                settings: source.clone(),
                url: parsed,
                partitions: 0,
            })
        })
        .collect()
}

/// The topic's partition count, creating the topic first with `--create-topics`.
async fn ensure_topic(
    kafka: &KafkaClient,
    settings: &Settings,
    plan: &SourcePlan,
    create: bool,
) -> Result<i32, ProduceError> {
    let topic = &plan.settings.topic;
    // About to create it if missing: no need to wait for a topic someone just created.
    let grace = if create {
        Duration::ZERO
    } else {
        crate::kafka::NEW_TOPIC_GRACE
    };
    if let Some(n) = kafka.partition_count_within(topic, grace).await? {
        return Ok(n);
    }
    if !create {
        return Err(ProduceError::MissingTopic {
            topic: topic.clone(),
            source_name: plan.settings.name.clone(),
        });
    }
    let admin = &settings.admin;
    if admin::create_topic(
        kafka,
        topic,
        admin.partitions,
        admin.replication_factor,
        true,
    )
    .await?
    {
        tracing::info!(%topic, partitions = admin.partitions, "created topic");
    }
    // The new topic's metadata can lag the create by a moment.
    let mut retry = Retry::new(settings.producer.retry_policy());
    loop {
        if let Some(n) = kafka.partition_count(topic).await? {
            return Ok(n);
        }
        let Some(wait) = retry.failed() else {
            return Err(ProduceError::Setup {
                source_name: plan.settings.name.clone(),
                topic: topic.clone(),
                error: "created, but its partitions never appeared in the metadata".into(),
            });
        };
        tokio::time::sleep(wait).await;
    }
}

async fn writing_client(settings: &Settings) -> Result<Client, ProduceError> {
    let backoff = BackoffConfig {
        deadline: Some(Duration::ZERO),
        ..BackoffConfig::default()
    };
    let builder = ClientBuilder::new(settings.kafka.bootstrap_brokers())
        .client_id(settings.kafka.client_id.as_str())
        .backoff_config(backoff);
    let timeout = settings.kafka.timeout();
    let unreachable = |reason: String| {
        ProduceError::Kafka(KafkaError::Unreachable {
            bootstrap: settings.kafka.bootstrap.clone(),
            timeout,
            reason,
        })
    };
    tokio::time::timeout(timeout, builder.build())
        .await
        .map_err(|_| unreachable("no broker answered".into()))?
        .map_err(|e| unreachable(e.to_string()))
}

fn compression(codec: CompressionCodec) -> Compression {
    match codec {
        CompressionCodec::None => Compression::NoCompression,
        CompressionCodec::Gzip => Compression::Gzip,
        CompressionCodec::Lz4 => Compression::Lz4,
        CompressionCodec::Snappy => Compression::Snappy,
        CompressionCodec::Zstd => Compression::Zstd,
    }
}

/// One source's run: what to read, and where its numbers go.
struct SourceRun {
    plan: SourcePlan,
    resume: bool,
    stats: Arc<SourceCounters>,
    /// The topic's live status (the partitions' end offsets as acknowledged).
    topic: Arc<TopicStatus>,
}

/// Runs one source to the end of its stream; the summary comes back even when it failed.
async fn produce_source(
    settings: &Settings,
    client: &Client,
    source: SourceRun,
    shutdown: CancellationToken,
) -> (SourceSummary, Result<(), ProduceError>) {
    let started = Instant::now();
    let mut resumed_at = None;
    let result = produce_source_inner(settings, client, &source, shutdown, &mut resumed_at).await;
    let SourceRun { plan, stats, .. } = source;
    stats.set_state(if result.is_ok() {
        RunState::Finished
    } else {
        RunState::Failed
    });
    let summary = SourceSummary {
        name: plan.settings.name.clone(),
        topic: plan.settings.topic.clone(),
        records: stats.records.load(Ordering::Relaxed),
        bad: stats.bad.load(Ordering::Relaxed),
        skipped: stats.skipped.load(Ordering::Relaxed),
        bytes: stats.bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        resumed_at,
        failed: result.is_err(),
    };
    (summary, result)
}

async fn produce_source_inner(
    settings: &Settings,
    client: &Client,
    run: &SourceRun,
    shutdown: CancellationToken,
    resumed_at: &mut Option<u64>,
) -> Result<(), ProduceError> {
    let SourceRun {
        plan,
        resume,
        stats,
        topic,
    } = run;
    let resume = *resume;
    let producer = &settings.producer;
    let source = &plan.settings;
    let request_timeout = settings.kafka.timeout();
    let setup_error = |error: String| ProduceError::Setup {
        source_name: source.name.clone(),
        topic: source.topic.clone(),
        error,
    };

    let mut clients = Vec::with_capacity(plan.partitions as usize);
    for partition in 0..plan.partitions {
        let what = format!("reaching the leader of {}/{partition}", source.topic);
        let client = retrying(settings, &what, || {
            client.partition_client(&source.topic, partition, UnknownTopicHandling::Error)
        })
        .await
        .map_err(setup_error)?;
        clients.push(client);
    }
    // The window spans this many stream offsets; `--resume` looks back as far.
    let window_span = producer.max_pending_records as u64;
    let point = if resume {
        let what = format!("looking up what {} already holds", source.topic);
        let point = retrying(settings, &what, || {
            resume::find(&clients, &source.name, window_span, request_timeout)
        })
        .await
        .map_err(setup_error)?;
        tracing::info!(source = %source.name, start = point.start, heads = ?point.heads, "resuming");
        *resumed_at = Some(point.start);
        point
    } else {
        let mut log_ends = Vec::with_capacity(clients.len());
        for c in &clients {
            let what = format!(
                "reading the end offset of {}/{}",
                source.topic,
                c.partition()
            );
            let end = retrying(settings, &what, || c.get_offset(OffsetAt::Latest));
            log_ends.push(end.await.map_err(setup_error)?);
        }
        ResumePoint {
            start: 0,
            heads: vec![None; clients.len()],
            log_ends,
        }
    };

    for (partition, &end) in point.log_ends.iter().enumerate() {
        topic.observe_latest(partition as i32, end);
    }
    let window = Arc::new(Window::new(window_span));
    let batch_limit = batch_limit(settings, &source.name, &source.topic).await;
    let context = Arc::new(WriterContext {
        source_name: source.name.clone(),
        topic: source.topic.clone(),
        compression: compression(producer.compression),
        linger: producer.linger(),
        batch_max_bytes: producer.batch_max_bytes,
        batch_limit,
        retry: producer.retry_policy(),
        on_bad_record: producer.on_bad_record,
        request_timeout,
        stats: Arc::clone(stats),
        topic_status: Arc::clone(topic),
        window: Arc::clone(&window),
    });
    // A writer that fails stops the reader through this token.
    let writer_failed = CancellationToken::new();
    let mut queues = Vec::with_capacity(clients.len());
    let mut writers = Vec::with_capacity(clients.len());
    for (client, &log_end) in clients.into_iter().zip(&point.log_ends) {
        let (tx, rx) = mpsc::channel(PARTITION_QUEUE);
        let writer = PartitionWriter::new(Arc::clone(&context), client, log_end);
        let failed = writer_failed.clone();
        writers.push(tokio::spawn(async move {
            let result = writer.run(rx).await;
            if result.is_err() {
                failed.cancel();
            }
            result
        }));
        queues.push(tx);
    }

    let mut reader = NdjsonReader::new(
        ReaderConfig {
            source_name: source.name.clone(),
            url: plan.url.clone(),
            retry: producer.retry_policy(),
            idle_timeout: producer.api_idle_timeout(),
            max_line_bytes: producer.max_line_bytes,
        },
        point.start,
        shutdown,
    )
    .reporting_to(Arc::clone(stats));
    let shaper = RecordShaper::new(source.key.clone(), plan.partitions);
    let mut bad_log = BadRecordLog::new(&source.name);
    let read_result: Result<(), ProduceError> = loop {
        let item = tokio::select! {
            _ = writer_failed.cancelled() => break Ok(()),
            item = reader.next_item() => item,
        };
        let (offset, shaped, line) = match item {
            Ok(Some(StreamItem::Line(line))) => (
                line.offset,
                shaper.shape(line.offset, &line.bytes),
                Some(line.bytes),
            ),
            Ok(Some(StreamItem::TooLong { offset, seen })) => {
                let limit = producer.max_line_bytes;
                (offset, Err(BadRecord::LineTooLong { seen, limit }), None)
            }
            Ok(None) => break Ok(()),
            Err(error) => break Err(error.into()),
        };
        let record = match shaped {
            Ok(record) => record,
            Err(reason) => {
                stats.bad.fetch_add(1, Ordering::Relaxed);
                if producer.on_bad_record == BadRecordPolicy::Fail {
                    break Err(ProduceError::BadRecord {
                        source_name: source.name.clone(),
                        offset,
                        reason,
                    });
                }
                bad_log.record(offset, &reason, line.as_deref());
                continue;
            }
        };
        if resume && point.already_written(record.partition, record.offset) {
            stats.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        tokio::select! {
            _ = writer_failed.cancelled() => break Ok(()),
            () = window.acquire(record.offset) => {} // the writer acknowledges it
        }
        let partition = record.partition as usize;
        if queues[partition].send(record).await.is_err() {
            break Ok(()); // the writer stopped; its error is collected below
        }
    };
    bad_log.finish();
    drop(queues); // writers flush what they hold, then end
    let mut first_error = read_result.err();
    for writer in writers {
        if let Err(error) = writer.await.expect("partition writer panicked") {
            first_error.get_or_insert(error);
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// The largest batch `topic` accepts, from its `max.message.bytes` less a batch's own header,
/// so batches are capped below it rather than refused and split. If the broker does not say
/// (an old broker, no permission to describe configs), there is no cap and a refused batch is
/// split (see [`writer`]).
async fn batch_limit(settings: &Settings, source_name: &str, topic: &str) -> usize {
    let described = crate::kafka::topic_config::describe(
        &settings.kafka,
        topic,
        crate::kafka::topic_config::MAX_MESSAGE_BYTES,
    )
    .await;
    match described.map(|v| v.and_then(|v| v.parse::<usize>().ok())) {
        Ok(Some(limit)) => {
            tracing::debug!(source = %source_name, %topic, max_message_bytes = limit, "batch limit");
            limit.saturating_sub(BATCH_HEADER_BYTES).max(1)
        }
        Ok(None) => usize::MAX,
        Err(error) => {
            tracing::warn!(source = %source_name, %topic, %error, "cannot read the topic's max.message.bytes; batches the broker refuses as too large will be split");
            usize::MAX
        }
    }
}

/// A record batch's header (v2 format), beyond its records.
const BATCH_HEADER_BYTES: usize = 61;

/// A setup call (partition leader, offsets, the resume look-up) retried while the broker
/// settles, e.g. a new topic's leader election or a broker that is restarting.
async fn retrying<T, E, F, Fut>(settings: &Settings, what: &str, call: F) -> Result<T, String>
where
    E: fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    crate::kafka::retrying(
        settings.producer.retry_policy(),
        settings.kafka.timeout(),
        what,
        call,
    )
    .await
}

/// Logs bad records with source and offset: the first few one by one, then a count every
/// few seconds, so a stream of garbage cannot flood the log.
struct BadRecordLog<'a> {
    source_name: &'a str,
    logged: u64,
    unlogged: BTreeMap<&'static str, u64>,
    last_summary: Instant,
}

impl<'a> BadRecordLog<'a> {
    fn new(source_name: &'a str) -> Self {
        Self {
            source_name,
            logged: 0,
            unlogged: BTreeMap::new(),
            last_summary: Instant::now(),
        }
    }

    fn record(&mut self, offset: u64, reason: &BadRecord, line: Option<&[u8]>) {
        if self.logged < BAD_RECORDS_LOGGED {
            self.logged += 1;
            let source = self.source_name;
            match line {
                Some(line) => {
                    let line = crate::excerpt::bytes(line);
                    tracing::warn!(%source, source_offset = offset, %reason, %line, "bad record skipped");
                }
                None => {
                    tracing::warn!(%source, source_offset = offset, %reason, "bad record skipped")
                }
            }
            if self.logged == BAD_RECORDS_LOGGED {
                tracing::warn!(source = %self.source_name, "further bad records are counted and summarised every {BAD_RECORD_SUMMARY_EVERY:?}");
            }
            return;
        }
        *self.unlogged.entry(reason.kind()).or_default() += 1;
        if self.last_summary.elapsed() >= BAD_RECORD_SUMMARY_EVERY {
            self.finish();
        }
    }

    fn finish(&mut self) {
        for (reason, count) in std::mem::take(&mut self.unlogged) {
            tracing::warn!(source = %self.source_name, count, %reason, "bad records skipped");
        }
        self.last_summary = Instant::now();
    }
}
