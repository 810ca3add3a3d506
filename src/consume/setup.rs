//! Before any topic runs: the topics chosen and checked against the config and the broker,
//! each one's owned partitions reached, its output locked and opened. What comes out is
//! everything a topic's loop ([`super::engine`]) and its file worker need.

use std::path::PathBuf;
use std::sync::Arc;

use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use tokio_util::sync::CancellationToken;

use super::bad_records::{BAD_RECORDS_DIR, BadRecordsPlace};
use super::checkpoint::Checkpoint;
use super::engine::{TopicFiles, TopicJob};
use super::lock::Ownership;
use super::schema::RowDecoder;
use super::{ConsumeError, ConsumeOptions, PartitionSelection, SinkKind};
use crate::kafka::KafkaClient;
use crate::kafka::fetch::PartitionReader;
use crate::lake::{LakeError, TableLocation};
use crate::settings::{ConsumerSettings, Settings};
use crate::sink::{
    ConsoleSink, DeltaSink, DeltaSinkOptions, ParquetSink, Sink, SinkError, writer_properties,
};
use crate::status::Status;

/// One topic, ready to run: its loop's side and its files' side.
pub(super) struct PreparedTopic {
    pub job: TopicJob,
    pub files: TopicFiles,
}

/// The topics to consume: `--topics` (each once: two jobs would share one checkpoint) or
/// every topic with a schema; each must have a schema and a valid name.
pub(super) fn chosen_topics(
    settings: &Settings,
    options: &ConsumeOptions,
) -> Result<Vec<String>, ConsumeError> {
    let consumer = &settings.consumer;
    let mut topics: Vec<String> = match &options.topics {
        Some(list) => list.clone(),
        None => consumer.topics.keys().cloned().collect(),
    };
    let mut seen = std::collections::HashSet::new();
    topics.retain(|t| seen.insert(t.clone()));
    for topic in &topics {
        if !consumer.topics.contains_key(topic) {
            return Err(ConsumeError::NoSchema {
                topic: topic.clone(),
                configured: consumer
                    .topics
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        crate::kafka::validate_topic_name(topic)?;
    }
    Ok(topics)
}

/// The partitions of a topic this consumer owns, each reached two ways: an rskafka client for
/// offset look-ups, and our own reader for fetches ([`crate::kafka::fetch`]).
pub(super) struct OwnedPartitions {
    pub clients: Vec<Arc<PartitionClient>>,
    pub readers: Vec<PartitionReader>,
}

/// Each partition of `topic` this consumer owns; the topic must exist and the selection must
/// name partitions it has.
pub(super) async fn owned_partitions(
    settings: &Settings,
    options: &ConsumeOptions,
    kafka: &KafkaClient,
    topic: &str,
) -> Result<OwnedPartitions, ConsumeError> {
    let count = kafka
        .partition_count(topic)
        .await?
        .ok_or_else(|| ConsumeError::MissingTopic {
            topic: topic.to_string(),
        })?;
    if let PartitionSelection::List(list) = &options.partitions
        && let Some(&bad) = list.iter().find(|&&p| p < 0 || p >= count)
    {
        return Err(ConsumeError::NoSuchPartition {
            topic: topic.to_string(),
            partition: bad,
            count,
        });
    }
    let owned: Vec<i32> = (0..count).filter(|&p| options.partitions.owns(p)).collect();
    if owned.is_empty() {
        return Err(ConsumeError::NothingOwned {
            topic: topic.to_string(),
            count,
        });
    }
    let mut partitions = Vec::new();
    let mut readers = Vec::new();
    for p in owned {
        readers.push(PartitionReader::new(
            &kafka.settings,
            &kafka.security,
            topic,
            p,
        ));
        let what = format!("reaching the leader of {topic}/{p}");
        let c = crate::kafka::retry_call(
            settings.consumer.retry_policy(),
            settings.kafka.timeout(),
            &what,
            || {
                kafka
                    .client
                    .partition_client(topic, p, UnknownTopicHandling::Retry)
            },
        )
        .await
        .map_err(|source| ConsumeError::Broker {
            topic: topic.to_string(),
            source: Box::new(source),
        })?;
        partitions.push(Arc::new(c));
    }
    Ok(OwnedPartitions {
        clients: partitions,
        readers,
    })
}

/// The topic's job and files: with the Parquet sink its checkpoint opened and its locks
/// taken before the sink touches the output.
pub(super) fn prepare(
    settings: &Settings,
    options: &ConsumeOptions,
    topic: &str,
    owned: OwnedPartitions,
    status: &Status,
) -> Result<PreparedTopic, ConsumeError> {
    let consumer = &settings.consumer;
    let OwnedPartitions {
        clients: partitions,
        readers,
    } = owned;
    let output = match options.sink {
        SinkKind::Console => Output {
            sink: Box::new(ConsoleSink::new(topic, consumer.console_rows)),
            checkpoint: None,
            locks: None,
            bad_records: BadRecordsPlace::Log,
        },
        SinkKind::Parquet => {
            let owned: Vec<i32> = partitions.iter().map(|c| c.partition()).collect();
            parquet_output(consumer, &options.partitions, topic, &owned)?
        }
        SinkKind::Delta => {
            let owned: Vec<i32> = partitions.iter().map(|c| c.partition()).collect();
            delta_output(settings, options, topic, owned)?
        }
    };
    let job = TopicJob {
        topic: topic.to_string(),
        partitions,
        readers: readers
            .into_iter()
            .map(|r| (r.partition(), Arc::new(tokio::sync::Mutex::new(r))))
            .collect(),
        settings: consumer.clone(),
        request_timeout: settings.kafka.timeout(),
        status: status.topic(topic),
        watched: status.is_watched(),
        _locks: output.locks,
        stop: CancellationToken::new(), // run_topic hands it the shutdown token
    };
    let files = TopicFiles {
        topic: topic.to_string(),
        decoder: RowDecoder::new(&consumer.topics[topic].schema),
        sink: output.sink,
        checkpoint: output.checkpoint,
        bad_records: output.bad_records,
        instance_suffix: options.partitions.file_suffix(),
        overwrite: options.overwrite,
        max_records_per_file: consumer.max_records_per_file,
        on_bad_record: consumer.on_bad_record,
    };
    Ok(PreparedTopic { job, files })
}

/// Where a topic's output goes, and what guards it.
struct Output {
    sink: Box<dyn Sink>,
    /// `None` for the console sink, which keeps no state between runs.
    checkpoint: Option<Checkpoint>,
    locks: Option<Ownership>,
    bad_records: BadRecordsPlace,
}

/// Where the Parquet sink's checkpoints of `topic` live, one directory per consumer identity:
/// `OUTPUT/TOPIC/_checkpoint`, or `CHECKPOINT/TOPIC` when `consumer.checkpoint` is set.
pub fn checkpoint_root(consumer: &ConsumerSettings, topic: &str) -> PathBuf {
    if consumer.checkpoint.as_os_str().is_empty() {
        consumer.output.join(topic).join("_checkpoint")
    } else {
        consumer.checkpoint.join(topic)
    }
}

/// `OUTPUT/TOPIC/` with its checkpoint (`OUTPUT/TOPIC/_checkpoint/<identity>` or under
/// `consumer.checkpoint`), locked for this consumer before the sink opens it (the sink clears
/// its temporaries).
fn parquet_output(
    consumer: &ConsumerSettings,
    selection: &PartitionSelection,
    topic: &str,
    owned: &[i32],
) -> Result<Output, ConsumeError> {
    let topic_dir = consumer.output.join(topic);
    let root = checkpoint_root(consumer, topic);
    let checkpoint = Checkpoint::open(root.join(selection.identity())).map_err(|source| {
        ConsumeError::Checkpoint {
            topic: topic.to_string(),
            source,
        }
    })?;
    let locks = Ownership::acquire(checkpoint.dir(), &topic_dir, owned).map_err(|source| {
        ConsumeError::Lock {
            topic: topic.to_string(),
            source,
        }
    })?;
    let sink = ParquetSink::new(
        topic_dir.clone(),
        selection.file_suffix(),
        consumer.compression,
    )
    .map_err(|source| ConsumeError::Sink {
        topic: topic.to_string(),
        source,
    })?
    .with_partition_by_day(consumer.topics[topic].partition_by_day.clone());
    Ok(Output {
        sink: Box::new(sink),
        checkpoint: Some(checkpoint),
        locks: Some(locks),
        bad_records: BadRecordsPlace::Dir(topic_dir.join(BAD_RECORDS_DIR)),
    })
}

/// The topic's Delta table (`OUTPUT/TOPIC`, created on first use), which is its own
/// checkpoint: no checkpoint directory and no locks (the table's `txn` versions and
/// delta-rs' conflict check keep two writers of one partition from both committing). Runs on
/// a blocking thread, so it may wait on the runtime for delta-rs.
fn delta_output(
    settings: &Settings,
    options: &ConsumeOptions,
    topic: &str,
    owned: Vec<i32>,
) -> Result<Output, ConsumeError> {
    let consumer = &settings.consumer;
    let sink_error = |source: SinkError| ConsumeError::Sink {
        topic: topic.to_string(),
        source,
    };
    let lake_error = |e: LakeError| sink_error(SinkError::Lake(e));
    let location =
        TableLocation::for_topic(&consumer.output, topic, &settings.storage).map_err(lake_error)?;
    let runtime = tokio::runtime::Handle::current();
    if options.overwrite && options.partitions != PartitionSelection::All {
        return Err(ConsumeError::OverwriteShared {
            topic: topic.to_string(),
        });
    }
    if options.overwrite {
        runtime
            .block_on(location.delete_table())
            .map_err(lake_error)?;
    }
    let topic_settings = &consumer.topics[topic];
    let day_column = topic_settings.partition_by_day.clone();
    let table = runtime
        .block_on(location.open_or_create(topic, &topic_settings.schema, day_column.is_some()))
        .map_err(lake_error)?;
    let bad_records = BadRecordsPlace::in_table(&location, &table, runtime.clone());
    let sink = DeltaSink::new(
        runtime,
        location,
        table,
        DeltaSinkOptions {
            identity: options.partitions.identity(),
            owned,
            day_column,
            properties: writer_properties(consumer.compression),
        },
    );
    Ok(Output {
        sink: Box::new(sink),
        checkpoint: None,
        locks: None,
        bad_records,
    })
}
