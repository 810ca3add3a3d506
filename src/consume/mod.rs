//! `consume`: the Spark replacement. Per topic, micro-batches read from Kafka with `rskafka`,
//! decoded straight into Arrow by the topic's schema, written by a sink (Parquet or console),
//! and checkpointed so the output survives crashes exactly once.
//!
//! Topics run concurrently, one loop each ([`engine`]); partitions of a batch are fetched
//! concurrently. Without consumer groups in rskafka, the consumer owns its offsets: several
//! processes split a topic with `--partitions`/`--instance`, each with its own checkpoint and
//! file names.
//!
//! * [`schema`] decodes a payload into a row; [`convert`] turns each value's text into its
//!   column's type exactly, or says why it cannot.
//! * [`checkpoint`] is the plan/commit log; [`lock`] makes a job its only writer; [`reconcile`]
//!   checks at start that the output holds nothing the checkpoint does not account for.

pub mod checkpoint;
mod convert;
mod engine;
mod lock;
mod reconcile;
pub mod schema;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rskafka::client::partition::UnknownTopicHandling;
use tokio_util::sync::CancellationToken;

use crate::kafka::{KafkaClient, KafkaError};
use crate::settings::Settings;
use crate::sink::{ConsoleSink, ParquetSink, Sink, SinkError};
use crate::status::Status;
use checkpoint::{Checkpoint, CheckpointError};
use engine::TopicJob;
use lock::{LockError, Ownership};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Parquet,
    Console,
}

/// Which partitions of each topic this process owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartitionSelection {
    All,
    /// `--partitions 0,2`
    List(Vec<i32>),
    /// `--instance I/N`: partitions `p` with `p % N == I`.
    Instance {
        index: u32,
        count: u32,
    },
}

impl PartitionSelection {
    /// Parses `I/N` for `--instance`.
    pub fn parse_instance(text: &str) -> Result<Self, String> {
        let (i, n) = text.split_once('/').ok_or("expected I/N, like 0/2")?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("{i:?} is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("instance {index}/{count}: I must be below N"));
        }
        Ok(Self::Instance { index, count })
    }

    fn owns(&self, partition: i32) -> bool {
        match self {
            Self::All => true,
            Self::List(list) => list.contains(&partition),
            Self::Instance { index, count } => partition as u32 % count == *index,
        }
    }

    /// Added to file and checkpoint names so instances sharing an output dir never collide.
    pub fn identity(&self) -> String {
        match self {
            Self::All => "all".into(),
            Self::List(list) => {
                // `--partitions 2,0` and `0,2,0` name the same consumer as `0,2`.
                let mut list = list.clone();
                list.sort_unstable();
                list.dedup();
                let names: Vec<String> = list.iter().map(i32::to_string).collect();
                format!("p{}", names.join("-"))
            }
            Self::Instance { index, count } => format!("i{index}of{count}"),
        }
    }

    fn file_suffix(&self) -> String {
        match self {
            Self::All => String::new(),
            _ => format!("-{}", self.identity()),
        }
    }
}

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
        "topic {topic}: gave up after consumer.retry_deadline: {error}; the checkpoint is intact, run again to continue"
    )]
    GaveUp { topic: String, error: String },
}

impl ConsumeError {
    /// Errors a retry of the same batch can cure (a full disk freed, a file system back):
    /// writing output or the checkpoint. A damaged checkpoint or bad data is not cured by
    /// waiting.
    fn is_retriable(&self) -> bool {
        matches!(
            self,
            Self::Sink { .. }
                | Self::Checkpoint {
                    source: CheckpointError::Io { .. },
                    ..
                }
        )
    }

    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::NoSchema { .. } | Self::NoSuchPartition { .. } | Self::NothingOwned { .. }
        )
    }
}

/// What one topic's run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopicSummary {
    pub topic: String,
    pub batches: u64,
    pub rows: u64,
    pub bad_records: u64,
    pub files: u64,
    pub elapsed: Duration,
}

impl TopicSummary {
    /// One summary per topic out of several runs' (in first-seen order): counts and times add.
    pub fn combine(summaries: impl IntoIterator<Item = TopicSummary>) -> Vec<TopicSummary> {
        let mut combined: Vec<TopicSummary> = Vec::new();
        for s in summaries {
            match combined.iter_mut().find(|c| c.topic == s.topic) {
                Some(c) => {
                    c.batches += s.batches;
                    c.rows += s.rows;
                    c.bad_records += s.bad_records;
                    c.files += s.files;
                    c.elapsed += s.elapsed;
                }
                None => combined.push(s),
            }
        }
        combined
    }
}

impl fmt::Display for TopicSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{}: {} rows in {} batches, {} files, {} bad records, {:.2} s, {:.0} records/s",
            self.topic,
            self.rows,
            self.batches,
            self.files,
            self.bad_records,
            secs,
            (self.rows + self.bad_records) as f64 / secs.max(1e-9)
        )
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
    let consumer = &settings.consumer;
    let configured = || {
        consumer
            .topics
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut topics: Vec<String> = match &options.topics {
        Some(list) => list.clone(),
        None => consumer.topics.keys().cloned().collect(),
    };
    // `--topics a,a` is one topic: two jobs would share one checkpoint.
    let mut seen = std::collections::HashSet::new();
    topics.retain(|t| seen.insert(t.clone()));
    for topic in &topics {
        if !consumer.topics.contains_key(topic) {
            return Err(ConsumeError::NoSchema {
                topic: topic.clone(),
                configured: configured(),
            });
        }
        crate::kafka::validate_topic_name(topic)?;
    }

    let kafka = KafkaClient::connect(&settings.kafka).await?;
    let mut jobs = Vec::new();
    for topic in &topics {
        let count =
            kafka
                .partition_count(topic)
                .await?
                .ok_or_else(|| ConsumeError::MissingTopic {
                    topic: topic.clone(),
                })?;
        if let PartitionSelection::List(list) = &options.partitions
            && let Some(&bad) = list.iter().find(|&&p| p < 0 || p >= count)
        {
            return Err(ConsumeError::NoSuchPartition {
                topic: topic.clone(),
                partition: bad,
                count,
            });
        }
        let owned: Vec<i32> = (0..count).filter(|&p| options.partitions.owns(p)).collect();
        if owned.is_empty() {
            return Err(ConsumeError::NothingOwned {
                topic: topic.clone(),
                count,
            });
        }
        let mut partitions = Vec::new();
        for p in owned {
            let what = format!("reaching the leader of {topic}/{p}");
            let c = crate::kafka::retrying(
                consumer.retry_policy(),
                settings.kafka.timeout(),
                &what,
                || {
                    kafka
                        .client
                        .partition_client(topic.as_str(), p, UnknownTopicHandling::Retry)
                },
            )
            .await
            .map_err(|error| ConsumeError::GaveUp {
                topic: topic.clone(),
                error,
            })?;
            partitions.push(Arc::new(c));
        }
        jobs.push(job(settings, options, topic, partitions, status)?);
    }

    let stop = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    for (job, sink) in jobs {
        tasks.spawn(engine::run_topic(job, sink, stop.clone()));
    }
    let mut summaries = Vec::new();
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done.expect("topic task panicked") {
            Ok(summary) => summaries.push(summary),
            Err(error) => {
                if first_error.is_none() && !stop.is_cancelled() {
                    tracing::error!(%error, "topic failed; stopping the other topics after their current batch");
                } else {
                    tracing::error!(%error, "topic failed");
                }
                stop.cancel();
                first_error.get_or_insert(error);
            }
        }
    }
    summaries.sort_by_key(|s| topics.iter().position(|t| *t == s.topic));
    if options.print_summaries && options.sink == SinkKind::Parquet {
        for summary in &summaries {
            println!("{summary}");
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(summaries),
    }
}

fn job(
    settings: &Settings,
    options: &ConsumeOptions,
    topic: &str,
    partitions: Vec<Arc<rskafka::client::partition::PartitionClient>>,
    status: &Status,
) -> Result<(TopicJob, Box<dyn Sink>), ConsumeError> {
    let consumer = &settings.consumer;
    let topic_dir = consumer.output.join(topic);
    let suffix = options.partitions.file_suffix();
    let (sink, checkpoint, bad_records_dir): (Box<dyn Sink>, _, _) = match options.sink {
        SinkKind::Console => (
            Box::new(ConsoleSink::new(topic, consumer.console_rows)),
            None,
            None,
        ),
        SinkKind::Parquet => {
            let root: PathBuf = if consumer.checkpoint.as_os_str().is_empty() {
                topic_dir.join("_checkpoint")
            } else {
                consumer.checkpoint.join(topic)
            };
            let checkpoint =
                Checkpoint::open(root.join(options.partitions.identity())).map_err(|source| {
                    ConsumeError::Checkpoint {
                        topic: topic.to_string(),
                        source,
                    }
                })?;
            // Locked before the sink touches the output (it clears its temporaries).
            let owned: Vec<i32> = partitions.iter().map(|c| c.partition()).collect();
            let lock =
                Ownership::acquire(checkpoint.dir(), &topic_dir, &owned).map_err(|source| {
                    ConsumeError::Lock {
                        topic: topic.to_string(),
                        source,
                    }
                })?;
            let sink = ParquetSink::new(topic_dir.clone(), suffix.clone(), consumer.compression)
                .map_err(|source| ConsumeError::Sink {
                    topic: topic.to_string(),
                    source,
                })?;
            (
                Box::new(sink),
                Some((checkpoint, lock)),
                Some(topic_dir.join("_bad_records")),
            )
        }
    };
    let (checkpoint, ownership) = checkpoint.unzip();
    let job = TopicJob {
        topic: topic.to_string(),
        partitions,
        schema: consumer.topics[topic].schema.clone(),
        checkpoint,
        _locks: ownership,
        overwrite: options.overwrite,
        bad_records_dir,
        instance_suffix: suffix,
        settings: consumer.clone(),
        request_timeout: settings.kafka.timeout(),
        status: status.topic(topic),
        watched: status.is_watched(),
    };
    Ok((job, sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_split_partitions_without_overlap() {
        let a = PartitionSelection::parse_instance("0/2").unwrap();
        let b = PartitionSelection::parse_instance("1/2").unwrap();
        for p in 0..7 {
            assert!(a.owns(p) != b.owns(p));
        }
        assert_eq!(a.identity(), "i0of2");
        assert_eq!(a.file_suffix(), "-i0of2");
        assert_eq!(PartitionSelection::All.file_suffix(), "");
        assert_eq!(PartitionSelection::List(vec![0, 2]).identity(), "p0-2");
        assert_eq!(PartitionSelection::List(vec![2, 0, 2]).identity(), "p0-2");
        assert!(PartitionSelection::parse_instance("2/2").is_err());
        assert!(PartitionSelection::parse_instance("x").is_err());
    }
}
