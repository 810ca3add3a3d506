//! `consume`: the Spark replacement. Per topic, micro-batches read from Kafka with `rskafka`,
//! decoded straight into Arrow by the topic's schema, written by a sink (Parquet or console),
//! and checkpointed so the output survives crashes exactly once.
//!
//! Topics run concurrently, one loop each ([`engine`]), each with a file worker thread of
//! its own for everything that touches a file; partitions of a batch are fetched
//! concurrently. Without consumer groups in rskafka, the consumer owns its offsets: several
//! processes split a topic with `--partitions`/`--instance` ([`selection`]), each with its own
//! checkpoint and file names.
//!
//! * [`setup`] checks the chosen topics and partitions and opens each one's output.
//! * [`schema`] decodes a payload into a row; [`convert`] turns each value's text into its
//!   column's type exactly, or says why it cannot.
//! * [`checkpoint`] is the plan/commit log; [`lock`] makes a job its only writer; [`reconcile`]
//!   checks at start that the output holds nothing the checkpoint does not account for.
//! * [`summary`]: what each topic did.
//!
//! Failure policy: a topic that fails stops the others after their current batch, which
//! each commits; then [`run`] returns the first error (the process exits 1). What the failed
//! topic wrote of its unfinished batch is accounted for by its plan and replaced when a rerun
//! replays that batch.

mod bad_records;
mod checkpoint;
mod committed;
mod convert;
mod engine;
mod lock;
mod reconcile;
pub mod schema;
mod selection;
mod setup;
mod summary;

pub use checkpoint::CheckpointError;
pub use committed::{CommittedFiles, committed_files};
pub use convert::timestamp_micros;
pub use selection::PartitionSelection;
pub use setup::checkpoint_root;
pub use summary::TopicSummary;

use tokio_util::sync::CancellationToken;

use crate::backoff::RetryError;
use crate::kafka::{KafkaClient, KafkaError};
use crate::settings::Settings;
use crate::sink::SinkError;
use crate::status::Status;
use lock::LockError;
use setup::PreparedTopic;

pub use crate::settings::SinkKind;
#[derive(Debug, Clone)]
pub struct ConsumeOptions {
    pub sink: SinkKind,
    /// `None`: every topic with a schema.
    pub topics: Option<Vec<String>>,
    pub partitions: PartitionSelection,
    /// Print a summary line per topic at the end (Parquet sink; `run` prints its own).
    pub print_summaries: bool,
    /// Delete this consumer's earlier output and checkpoint first (`--overwrite`).
    pub overwrite: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error(
        "topic {topic:?} has no schema; topics with one: {configured} (add [consumer.topics.{topic}.schema] to the config)"
    )]
    NoSchema { topic: String, configured: String },
    #[error(
        "topic {topic:?} does not exist; create it with `factorypal admin create-topic {topic}` or check --topics"
    )]
    MissingTopic { topic: String },
    #[error("topic {topic} has partitions 0..{count}; --partitions named {partition}")]
    NoSuchPartition {
        topic: String,
        partition: i32,
        count: i32,
    },
    #[error("topic {topic}: this instance owns no partition (the topic has {count})")]
    NothingOwned { topic: String, count: i32 },
    #[error(
        "topic {topic}: --overwrite with --sink delta deletes the whole table, which other instances share; run it once without --instance/--partitions (with every consumer of the table stopped), then start the instances"
    )]
    OverwriteShared { topic: String },
    #[error(
        "consumer.output {output:?} is object storage, which only the delta sink writes; consume with --sink delta (consumer.sink = \"delta\"), or give the parquet sink a local directory"
    )]
    ParquetOnObjectStorage { output: String },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("topic {topic}: {source}")]
    Checkpoint {
        topic: String,
        #[source]
        source: CheckpointError,
    },
    #[error("topic {topic}: {source}")]
    Sink {
        topic: String,
        #[source]
        source: SinkError,
    },
    #[error("topic {topic}: {source}")]
    Lock {
        topic: String,
        #[source]
        source: LockError,
    },
    #[error(
        "topic {topic}: {dir} holds {count} data file(s) this consumer's checkpoint does not account for ({why}; first: {first}); consuming now would write their records a second time or delete them. Give this consumer a new output directory (--output), or pass --overwrite to delete this topic's earlier output and checkpoint and start over from consumer.starting_offsets"
    )]
    UnaccountedOutput {
        topic: String,
        dir: String,
        count: usize,
        first: String,
        why: String,
    },
    #[error(
        "topic {topic}, partition {partition}: the checkpoint's next offset {next} is past the partition's end (the broker has offsets {earliest}..{latest}): the topic was deleted and re-created, or the broker lost data; set consumer.on_data_loss = \"skip\" to continue from offset {earliest}, or start the topic over with --overwrite"
    )]
    PastEnd {
        topic: String,
        partition: i32,
        next: i64,
        earliest: i64,
        latest: i64,
    },
    #[error(
        "topic {topic}, partition {partition}: the partition now ends below offset {offset} of a planned batch (the broker has offsets {earliest}..{latest}): the topic was deleted and re-created while it was consumed; run again: the unfinished batch is then checked against consumer.on_data_loss"
    )]
    TopicChanged {
        topic: String,
        partition: i32,
        offset: i64,
        earliest: i64,
        latest: i64,
    },
    #[error(
        "topic {topic}, partition {partition}: offsets {from}..{to} no longer exist (retention removed them before they were consumed); set consumer.on_data_loss = \"skip\" to continue from offset {to}"
    )]
    DataLoss {
        topic: String,
        partition: i32,
        from: i64,
        to: i64,
    },
    #[error(
        "topic {topic}, partition {partition}, offset {offset}: bad record: {reason} (consumer.on_bad_record = \"fail\"; \"skip\" writes it to _bad_records/ and goes on)"
    )]
    BadRecord {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },
    #[error(
        "topic {topic}: {source}; the checkpoint is intact: check the broker (kafka.bootstrap) and run again to continue"
    )]
    Broker {
        topic: String,
        #[source]
        source: Box<RetryError<KafkaError>>,
    },
    #[error(
        "topic {topic}: stopped while batch {batch} waited to be tried again, so it is not committed (a rerun replays it); it had failed with: {source}"
    )]
    Stopped {
        topic: String,
        batch: u64,
        #[source]
        source: Box<ConsumeError>,
    },
    #[error(
        "topic {topic}, partition {partition}: the broker returns no records for offsets {from}..{to} though they exist; the checkpoint is intact, run again to continue"
    )]
    NoRecords {
        topic: String,
        partition: i32,
        from: i64,
        to: i64,
    },
    #[error(
        "topic {topic}: cannot start the thread that writes its files: {source}; the system is out of threads or memory, free some and run again"
    )]
    Worker {
        topic: String,
        #[source]
        source: std::io::Error,
    },
}

impl ConsumeError {
    /// Errors a retry of the same batch can cure (a full disk freed, a file system or an
    /// object store back): writing output or the checkpoint. A damaged checkpoint, bad data
    /// or another writer on our partitions is not cured by waiting.
    fn is_retriable(&self) -> bool {
        match self {
            Self::Sink { source, .. } => source.is_retriable(),
            Self::Checkpoint { source, .. } => matches!(source, CheckpointError::Io { .. }),
            _ => false,
        }
    }
}

impl crate::failure::Classify for ConsumeError {
    /// Topics and partitions the command line named that cannot be consumed; an invalid topic
    /// name, however deep in a Kafka error.
    fn is_usage(&self) -> bool {
        match self {
            Self::NoSchema { .. }
            | Self::NoSuchPartition { .. }
            | Self::NothingOwned { .. }
            | Self::OverwriteShared { .. }
            | Self::ParquetOnObjectStorage { .. } => true,
            Self::Kafka(error) => crate::failure::Classify::is_usage(error),
            _ => false,
        }
    }
}

/// Consumes the chosen topics until drained (`available-now`) or shutdown. A topic that fails
/// stops the others after their current batch: a pipeline that silently lost one of its
/// streams would be worse than one that stops and says why.
pub async fn run(
    settings: &Settings,
    options: &ConsumeOptions,
    status: &Status,
    shutdown: CancellationToken,
) -> Result<Vec<TopicSummary>, ConsumeError> {
    let output = &settings.consumer.output;
    if options.sink == SinkKind::Parquet && crate::lake::is_remote(output) {
        return Err(ConsumeError::ParquetOnObjectStorage {
            output: output.display().to_string(),
        });
    }
    let topics = setup::chosen_topics(settings, options)?;
    let kafka = KafkaClient::connect(&settings.kafka).await?;
    // Every topic is checked, locked and opened before any runs.
    let mut prepared = Vec::new();
    for topic in &topics {
        let partitions = setup::owned_partitions(settings, options, &kafka, topic).await?;
        // Opening the output creates directories and takes file locks: blocking work.
        let (settings, options, status, topic) = (
            settings.clone(),
            options.clone(),
            status.clone(),
            topic.clone(),
        );
        let topic_setup = tokio::task::spawn_blocking(move || {
            setup::prepare(&settings, &options, &topic, partitions, &status)
        });
        prepared.push(topic_setup.await.expect("topic setup panicked")?);
    }
    let RunOutcome {
        mut summaries,
        first_error,
    } = run_topics(prepared, shutdown).await;
    summaries.sort_by_key(|s| topics.iter().position(|t| *t == s.topic));
    if options.print_summaries && options.sink != SinkKind::Console {
        for summary in &summaries {
            println!("{summary}");
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(summaries),
    }
}

/// How the topics' runs ended: the summaries of those that finished, and the first error.
struct RunOutcome {
    summaries: Vec<TopicSummary>,
    first_error: Option<ConsumeError>,
}

/// Runs every topic at once until each has ended; the first failure stops the others after
/// their current batch (which they commit).
async fn run_topics(prepared: Vec<PreparedTopic>, shutdown: CancellationToken) -> RunOutcome {
    let stop = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    for PreparedTopic { job, files } in prepared {
        tasks.spawn(engine::run_topic(job, files, stop.clone()));
    }
    let mut outcome = RunOutcome {
        summaries: Vec::new(),
        first_error: None,
    };
    while let Some(done) = tasks.join_next().await {
        match done.expect("topic task panicked") {
            Ok(summary) => outcome.summaries.push(summary),
            Err(error) => {
                if outcome.first_error.is_none() && !stop.is_cancelled() {
                    tracing::error!(%error, "topic failed; stopping the other topics after their current batch");
                } else {
                    tracing::error!(%error, "topic failed");
                }
                stop.cancel();
                outcome.first_error.get_or_insert(error);
            }
        }
    }
    outcome
}
