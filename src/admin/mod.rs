//! `admin`: create, delete, list and describe topics. Built on rskafka's controller client;
//! leaders come from our own metadata request (see `kafka::metadata`).

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use serde::Serialize;

use crate::cli::AdminCommand;
use crate::failure::Classify;
use crate::kafka::{KafkaClient, KafkaError, broker_timeout_ms, metadata, validate_topic_name};
use crate::settings::Settings;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("topic {0:?} already exists; pass --if-not-exists to accept an existing topic")]
    TopicExists(String),
    #[error(
        "topic {0:?} does not exist; `factorypal admin list-topics` shows the topics there are"
    )]
    NoSuchTopic(String),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

impl Classify for AdminError {
    fn is_usage(&self) -> bool {
        match self {
            Self::TopicExists(_) | Self::NoSuchTopic(_) => false,
            Self::Kafka(error) => error.is_usage(),
        }
    }
}

/// One partition as `describe-topic` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub earliest: i64,
    pub latest: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: Vec<PartitionInfo>,
}

/// Runs one admin command, printing its result to stdout.
pub async fn run(settings: &Settings, command: &AdminCommand) -> Result<(), AdminError> {
    // Names are checked before any network call, so a typo fails fast even with no broker.
    match command {
        AdminCommand::CreateTopic { name, .. }
        | AdminCommand::DeleteTopic { name, .. }
        | AdminCommand::DescribeTopic { name, .. } => validate_topic_name(name)?,
        AdminCommand::ListTopics { .. } => {}
    }
    let kafka = KafkaClient::connect(&settings.kafka).await?;
    match command {
        AdminCommand::CreateTopic {
            name,
            if_not_exists,
            ..
        } => {
            let created = create_topic(
                &kafka,
                name,
                settings.admin.partitions,
                settings.admin.replication_factor,
                *if_not_exists,
            )
            .await?;
            if created {
                println!(
                    "created topic {name} ({} partitions, replication factor {})",
                    settings.admin.partitions, settings.admin.replication_factor
                );
            } else {
                println!("topic {name} already exists");
            }
        }
        AdminCommand::DeleteTopic { name, if_exists } => {
            if delete_topic(&kafka, name, *if_exists).await? {
                println!("deleted topic {name}");
            } else {
                println!("topic {name} does not exist");
            }
        }
        AdminCommand::ListTopics { all } => {
            for name in list_topics(&kafka, *all).await? {
                println!("{name}");
            }
        }
        AdminCommand::DescribeTopic { name, json } => {
            let info = describe_topic(&kafka, name).await?;
            if *json {
                println!("{}", serde_json::to_string(&info).expect("serializable"));
            } else {
                print!("{}", render_table(&info));
            }
        }
    }
    Ok(())
}

/// Creates a topic; `Ok(false)` when it existed and `if_not_exists` allowed that.
pub async fn create_topic(
    kafka: &KafkaClient,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    if_not_exists: bool,
) -> Result<bool, AdminError> {
    validate_topic_name(name)?;
    let controller = kafka
        .client
        .controller_client()
        .map_err(|source| client_error("create topic", source))?;
    let result = kafka
        .call(
            format!("create topic {name}"),
            controller.create_topic(
                name,
                partitions,
                replication_factor,
                broker_timeout_ms(&kafka.settings),
            ),
        )
        .await;
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.protocol_error() == Some(ProtocolError::TopicAlreadyExists) => {
            if if_not_exists {
                Ok(false)
            } else {
                Err(AdminError::TopicExists(name.into()))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes a topic; `Ok(false)` when it did not exist and `if_exists` allowed that.
pub async fn delete_topic(
    kafka: &KafkaClient,
    name: &str,
    if_exists: bool,
) -> Result<bool, AdminError> {
    validate_topic_name(name)?;
    let controller = kafka
        .client
        .controller_client()
        .map_err(|source| client_error("delete topic", source))?;
    let result = kafka
        .call(
            format!("delete topic {name}"),
            controller.delete_topic(name, broker_timeout_ms(&kafka.settings)),
        )
        .await;
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.protocol_error() == Some(ProtocolError::UnknownTopicOrPartition) => {
            if if_exists {
                Ok(false)
            } else {
                Err(AdminError::NoSuchTopic(name.into()))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Topic names, sorted. Internal topics (flagged by the broker, or named with a leading `_`
/// by convention, like `__consumer_offsets` or `_schemas`) only with `all`.
pub async fn list_topics(kafka: &KafkaClient, all: bool) -> Result<Vec<String>, AdminError> {
    let metadata = kafka.metadata(None).await?;
    let mut names: Vec<String> = metadata
        .topics
        .into_iter()
        .filter(|t| all || !(t.is_internal || t.name.starts_with('_')))
        .map(|t| t.name)
        .collect();
    names.sort();
    Ok(names)
}

/// Partitions of a topic with leader and earliest/latest offsets.
pub async fn describe_topic(kafka: &KafkaClient, name: &str) -> Result<TopicInfo, AdminError> {
    validate_topic_name(name)?;
    let metadata = kafka.metadata(Some(&[name.to_string()])).await?;
    let topic = metadata
        .topics
        .into_iter()
        .find(|t| t.name == name)
        .filter(|t| t.error_code != metadata::UNKNOWN_TOPIC)
        .ok_or_else(|| AdminError::NoSuchTopic(name.into()))?;
    let mut partitions = Vec::with_capacity(topic.partitions.len());
    for p in &topic.partitions {
        let operation = format!("read offsets of {name}/{}", p.partition);
        let client = kafka
            .call(
                operation.clone(),
                kafka
                    .client
                    .partition_client(name, p.partition, UnknownTopicHandling::Retry),
            )
            .await?;
        let earliest = kafka
            .call(operation.clone(), client.get_offset(OffsetAt::Earliest))
            .await?;
        let latest = kafka
            .call(operation, client.get_offset(OffsetAt::Latest))
            .await?;
        partitions.push(PartitionInfo {
            partition: p.partition,
            leader: p.leader,
            earliest,
            latest,
        });
    }
    partitions.sort_by_key(|p| p.partition);
    Ok(TopicInfo {
        name: topic.name,
        partitions,
    })
}

fn render_table(info: &TopicInfo) -> String {
    let mut out = format!(
        "topic {} ({} partitions)\n",
        info.name,
        info.partitions.len()
    );
    out.push_str(&format!(
        "{:>9} {:>6} {:>12} {:>12}\n",
        "PARTITION", "LEADER", "EARLIEST", "LATEST"
    ));
    for p in &info.partitions {
        out.push_str(&format!(
            "{:>9} {:>6} {:>12} {:>12}\n",
            p.partition, p.leader, p.earliest, p.latest
        ));
    }
    out
}

fn client_error(operation: &str, source: ClientError) -> KafkaError {
    KafkaError::Client {
        operation: operation.into(),
        source: Box::new(source),
    }
}
