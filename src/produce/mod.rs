//! `produce`: reads the NDJSON streams the API serves and writes every record to its Kafka
//! topic, keyed and partitioned like the Java client, at least once and without duplicates.
//!
//! Where things are:
//! - [`plan`]: which sources run, their URLs ([`url`]: credentials sent as basic auth, secrets
//!   masked whenever shown) and topics, and the writing Kafka client; all before any source
//!   reads.
//! - [`pipeline`]: one source's run in three phases (prepare → spawn writers → pump).
//! - [`source`]: the HTTP stream as numbered lines, reconnecting at `?offset=N`; [`lines`]
//!   cuts them, linear and bounded by `producer.max_line_bytes`.
//! - [`record`]: a line → a keyed record on its partition; [`bad_records`]: what a line that
//!   cannot be one does (`producer.on_bad_record`).
//! - [`writer`]: one task per partition batches and produces, in order, retrying without
//!   writing twice; [`window`] bounds the records in flight by stream offset, which makes
//!   `--resume` ([`resume`]) cheap and exact.
//!
//! Sources run concurrently in one process. **Failure policy:** a source that fails stops the
//! others: they stop reading, write and acknowledge every record they read, and end; then the
//! process reports the first error (exit 1). Their topics hold a gap-free prefix of each
//! stream, and `--resume` continues each exactly where it stopped. A shutdown (SIGTERM,
//! Ctrl-C) stops every source the same way, and is no failure.

mod bad_records;
mod lines;
mod pipeline;
mod plan;
mod progress;
mod record;
mod resume;
mod source;
mod url;
mod window;
mod writer;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::Client;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use record::{BadRecord, HEADER_SOURCE, HEADER_SOURCE_OFFSET, Prepared, RecordShaper};
pub use source::{Line, NdjsonReader, SourceError, StreamItem};
pub use url::StreamUrl;

use crate::admin::AdminError;
use crate::backoff::RetryError;
use crate::kafka::{KafkaClient, KafkaError};
use crate::settings::Settings;
use crate::status::{SourceCounters, Status};
use pipeline::{SourceOutcome, SourceRun};

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
        "source {source_name}: the broker refused a batch ({bytes} bytes) for {topic}/{partition}, and trying again cannot change that: {source}; check the topic and the client's permissions on it"
    )]
    Rejected {
        source_name: String,
        topic: String,
        partition: i32,
        bytes: usize,
        #[source]
        source: Box<KafkaError>,
    },
    #[error(
        "source {source_name}: gave up writing to {topic}/{partition} after {attempts} attempts over {outage:.1?} (producer.retry_deadline): {source}; is the broker up?"
    )]
    GaveUp {
        source_name: String,
        topic: String,
        partition: i32,
        attempts: u32,
        outage: Duration,
        #[source]
        source: Box<KafkaError>,
    },
    #[error("source {source_name}: cannot prepare {topic}: {source}")]
    Setup {
        source_name: String,
        topic: String,
        #[source]
        source: Box<RetryError<KafkaError>>,
    },
    #[error(
        "source {source_name}: topic {topic} was created, but its partitions never appeared in the metadata within producer.retry_deadline; check the broker's logs"
    )]
    NewTopicMissing { source_name: String, topic: String },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl crate::failure::Classify for ProduceError {
    /// Sources and URLs the command line or config named that cannot work; an invalid topic
    /// name, however deep in a Kafka or admin error.
    fn is_usage(&self) -> bool {
        match self {
            Self::UnknownSource { .. } | Self::NoSources { .. } | Self::BadUrl { .. } => true,
            Self::Kafka(error) => error.is_usage(),
            Self::Admin(error) => error.is_usage(),
            _ => false,
        }
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

/// Produces the chosen sources concurrently until their streams end (or shutdown), prints
/// one summary line per source, and fails if any source failed: the first failure stops the
/// others (see the module docs).
pub async fn run(
    settings: &Settings,
    options: &ProduceOptions,
    status: &Status,
    shutdown: CancellationToken,
) -> Result<Vec<SourceSummary>, ProduceError> {
    let mut plans = plan::plan(settings, options)?;
    let kafka = KafkaClient::connect(&settings.kafka).await?;
    for plan in &mut plans {
        plan.partitions = plan::ensure_topic(&kafka, settings, plan, options.create_topics).await?;
        plan.batch_limit =
            plan::batch_limit(&kafka, &plan.settings.name, &plan.settings.topic).await;
    }
    let client = Arc::new(kafka.client_without_retries().await?);

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
        settings.producer.progress_interval.duration(),
        progress_done.clone(),
    );
    let runs = plans
        .into_iter()
        .zip(stats)
        .map(|(plan, stats)| SourceRun {
            topic: status.topic(&plan.settings.topic),
            plan,
            resume: options.resume,
            stats,
        })
        .collect();
    let ended = run_sources(settings, client, runs, shutdown).await;
    progress_done.cancel();
    let _ = progress.await;
    let mut summaries = Vec::with_capacity(ended.outcomes.len());
    let mut first_error = None;
    for (index, SourceOutcome { summary, result }) in ended.outcomes.into_iter().enumerate() {
        println!("{summary}");
        summaries.push(summary);
        if ended.first_failure == Some(index) {
            first_error = result.err();
        }
    }
    first_error.map_or(Ok(summaries), Err)
}

/// Every source's outcome, in the sources' order, and which source failed first (the error
/// to report; later failures are only logged).
struct Ended {
    outcomes: Vec<SourceOutcome>,
    first_failure: Option<usize>,
}

/// Runs every source in a task of its own until all have ended; the first to fail stops the
/// others, which flush what they read.
async fn run_sources(
    settings: &Settings,
    client: Arc<Client>,
    runs: Vec<SourceRun>,
    shutdown: CancellationToken,
) -> Ended {
    let stop = shutdown.child_token();
    let mut tasks = JoinSet::new();
    for (index, run) in runs.into_iter().enumerate() {
        let settings = settings.clone();
        let client = Arc::clone(&client);
        let stop = stop.clone();
        tasks.spawn(async move {
            let outcome = pipeline::produce_source(&settings, &client, run, stop).await;
            (index, outcome)
        });
    }
    let mut outcomes: Vec<(usize, SourceOutcome)> = Vec::with_capacity(tasks.len());
    let mut first_failure = None;
    while let Some(joined) = tasks.join_next().await {
        let (index, outcome) = joined.expect("source task panicked");
        if let Err(error) = &outcome.result {
            tracing::error!(source = %outcome.summary.name, %error, "source failed");
            if first_failure.is_none() {
                first_failure = Some(index);
                if !tasks.is_empty() {
                    tracing::warn!(source = %outcome.summary.name, "stopping the other sources: they write what they have read, then end");
                }
                stop.cancel();
            }
        }
        outcomes.push((index, outcome));
    }
    outcomes.sort_by_key(|(index, _)| *index);
    Ended {
        outcomes: outcomes.into_iter().map(|(_, outcome)| outcome).collect(),
        first_failure,
    }
}
