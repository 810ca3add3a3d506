//! `admin`: create, delete, list and describe topics. Topics are created with our own
//! CreateTopics request (`kafka::create_topics`, which sends `--topic-config` settings) and
//! deleted with rskafka's controller client; leaders, replicas and in-sync replicas come from
//! our own metadata request (see `kafka::metadata`). This module owns what the user sees: the
//! `KEY=VALUE` argument rules and what each refusal of the broker means and asks the user to do.

use rskafka::client::error::{Error as ClientError, ProtocolError};
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use serde::Serialize;

use crate::cli::AdminCommand;
use crate::excerpt::Excerpt;
use crate::failure::Classify;
use crate::kafka::create_topics::{self, CreateTopicsError, NewTopic, TopicConfig};
use crate::kafka::{KafkaClient, KafkaError, broker_timeout_ms, metadata, validate_topic_name};
use crate::settings::Settings;

/// Where Kafka lists the topic settings `--topic-config` accepts.
const TOPIC_CONFIGS_DOC: &str = "https://kafka.apache.org/documentation/#topicconfigs";
/// The topic setting for how many replicas must hold a write before `acks=all` succeeds.
const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("topic {0:?} already exists; pass --if-not-exists to accept an existing topic")]
    TopicExists(String),
    #[error(
        "topic {0:?} does not exist; `factorypal admin list-topics` shows the topics there are"
    )]
    NoSuchTopic(String),
    #[error(
        "--topic-config {}: {why}; write it as KEY=VALUE, e.g. --topic-config retention.ms=86400000",
        Excerpt(.argument)
    )]
    BadTopicConfig { argument: String, why: &'static str },
    #[error(
        "--topic-config {} is given twice; give each key once",
        Excerpt(.key)
    )]
    DuplicateTopicConfig { key: String },
    #[error(
        "--topic-config min.insync.replicas={min_insync} is more than the replication factor {replication_factor}: every write that waits for all in-sync replicas (as `produce` does) would be refused; raise --replication-factor or lower min.insync.replicas"
    )]
    MinInsyncAboveReplication {
        min_insync: i64,
        replication_factor: i16,
    },
    #[error(
        "the broker refused to create topic {topic:?}: {error}{}; {hint}",
        broker_says(.message.as_deref())
    )]
    CreateRefused {
        topic: String,
        #[source]
        error: ProtocolError,
        /// The broker's own explanation, if it gave one.
        message: Option<String>,
        /// What the user can do about it.
        hint: String,
    },
    #[error(transparent)]
    CreateTopics(#[from] CreateTopicsError),
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

impl Classify for AdminError {
    fn is_usage(&self) -> bool {
        match self {
            Self::BadTopicConfig { .. }
            | Self::DuplicateTopicConfig { .. }
            | Self::MinInsyncAboveReplication { .. } => true,
            // The broker's verdict on a request it understood: the operation failed (exit 1),
            // like any other refusal by the cluster.
            Self::TopicExists(_)
            | Self::NoSuchTopic(_)
            | Self::CreateRefused { .. }
            | Self::CreateTopics(_) => false,
            Self::Kafka(error) => error.is_usage(),
        }
    }
}

/// ` ("the broker's message")` quoted, or nothing.
fn broker_says(message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(" ({})", Excerpt(m)),
        _ => String::new(),
    }
}

/// One partition as `describe-topic` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    /// Node ids of the brokers holding a copy, the preferred leader first.
    pub replicas: Vec<i32>,
    /// Node ids of the replicas that are caught up with the leader (in-sync replicas).
    pub isr: Vec<i32>,
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
    // Names and settings are checked before any network call, so a typo fails fast even with
    // no broker.
    let mut configs = Vec::new();
    match command {
        AdminCommand::CreateTopic {
            name, topic_config, ..
        } => {
            validate_topic_name(name)?;
            configs = parse_topic_configs(topic_config)?;
            check_min_insync(&configs, settings.admin.replication_factor)?;
        }
        AdminCommand::DeleteTopic { name, .. } | AdminCommand::DescribeTopic { name, .. } => {
            validate_topic_name(name)?
        }
        AdminCommand::ListTopics { .. } => {}
    }
    let kafka = KafkaClient::connect(&settings.kafka).await?;
    match command {
        AdminCommand::CreateTopic {
            name,
            if_not_exists,
            ..
        } => {
            let topic = NewTopic {
                name,
                partitions: settings.admin.partitions,
                replication_factor: settings.admin.replication_factor,
                configs: &configs,
            };
            if create_topic_with(&kafka, &topic, *if_not_exists).await? {
                println!("{}", created_line(&topic));
            } else if configs.is_empty() {
                println!("topic {name} already exists");
            } else {
                println!("topic {name} already exists; its settings were left as they are");
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

/// Creates a topic with the broker's default settings; `Ok(false)` when it existed and
/// `if_not_exists` allowed that.
pub async fn create_topic(
    kafka: &KafkaClient,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    if_not_exists: bool,
) -> Result<bool, AdminError> {
    let topic = NewTopic {
        name,
        partitions,
        replication_factor,
        configs: &[],
    };
    create_topic_with(kafka, &topic, if_not_exists).await
}

/// Creates `topic` with its settings; `Ok(false)` when it existed and `if_not_exists` allowed
/// that (an existing topic's settings are neither compared nor changed).
pub async fn create_topic_with(
    kafka: &KafkaClient,
    topic: &NewTopic<'_>,
    if_not_exists: bool,
) -> Result<bool, AdminError> {
    validate_topic_name(topic.name)?;
    let outcome = create_topics::create(&kafka.settings, &kafka.security, topic).await?;
    match outcome.error {
        None => {
            await_leaders(kafka, topic).await;
            Ok(true)
        }
        Some(ProtocolError::TopicAlreadyExists) if if_not_exists => Ok(false),
        Some(ProtocolError::TopicAlreadyExists) => Err(AdminError::TopicExists(topic.name.into())),
        Some(error) => {
            let hint = refusal_hint(topic, error, outcome.message.as_deref());
            Err(AdminError::CreateRefused {
                topic: topic.name.into(),
                error,
                message: outcome.message,
                hint,
            })
        }
    }
}

/// Waits, within `kafka.timeout`, until the metadata shows every partition of a new topic with a
/// leader. The broker answers CreateTopics once the controller has recorded the topic, which can
/// be before any broker serves it: a `describe-topic` or `kcat -L` right after would find no
/// partitions, and a first write would be refused. If the wait runs out the topic still exists,
/// so that is a warning, not a failure.
async fn await_leaders(kafka: &KafkaClient, topic: &NewTopic<'_>) {
    let deadline = tokio::time::Instant::now() + kafka.settings.timeout();
    let names = [topic.name.to_string()];
    loop {
        if let Ok(meta) = kafka.metadata(Some(&names)).await
            && meta.topics.iter().any(|t| {
                t.name == topic.name
                    && t.partitions.len() == topic.partitions as usize
                    && t.partitions.iter().all(|p| p.leader >= 0)
            })
        {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                topic = topic.name,
                "topic was created but its partitions have no leader yet after {:?}; the first writes may be retried until they do",
                kafka.settings.timeout()
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `created topic NAME (N partitions, replication factor R[, KEY=VALUE, ...])`.
fn created_line(topic: &NewTopic<'_>) -> String {
    let mut line = format!(
        "created topic {} ({} partitions, replication factor {}",
        topic.name, topic.partitions, topic.replication_factor
    );
    for c in topic.configs {
        line.push_str(&format!(", {}={}", c.key, c.value));
    }
    line.push(')');
    line
}

/// Parses the `--topic-config KEY=VALUE` arguments: the key is what precedes the first `=`,
/// not empty and without white space; the value is the rest (it may be empty, or hold `=`).
/// Each key at most once: the broker would refuse the whole request otherwise.
pub fn parse_topic_configs(arguments: &[String]) -> Result<Vec<TopicConfig>, AdminError> {
    let mut configs: Vec<TopicConfig> = Vec::with_capacity(arguments.len());
    for argument in arguments {
        let bad = |why| AdminError::BadTopicConfig {
            argument: argument.clone(),
            why,
        };
        let (key, value) = argument
            .split_once('=')
            .ok_or_else(|| bad("it has no `=`"))?;
        if key.is_empty() {
            return Err(bad("the key before `=` is empty"));
        }
        if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the key contains white space"));
        }
        // The request's strings carry a 16-bit length.
        if key.len() > i16::MAX as usize || value.len() > i16::MAX as usize {
            return Err(bad("it is longer than Kafka's limit of 32767 bytes"));
        }
        if configs.iter().any(|c| c.key == key) {
            return Err(AdminError::DuplicateTopicConfig { key: key.into() });
        }
        configs.push(TopicConfig {
            key: key.into(),
            value: value.into(),
        });
    }
    Ok(configs)
}

/// Refuses a `min.insync.replicas` above the replication factor: Kafka accepts such a topic,
/// but no write with `acks=all` (rskafka's, so `produce`'s) could ever succeed on it. A value
/// that is not a number is left for the broker to refuse with its own words.
fn check_min_insync(configs: &[TopicConfig], replication_factor: i16) -> Result<(), AdminError> {
    let min_insync = configs
        .iter()
        .find(|c| c.key == MIN_INSYNC_REPLICAS)
        .and_then(|c| c.value.parse::<i64>().ok());
    match min_insync {
        Some(min_insync) if min_insync > i64::from(replication_factor) => {
            Err(AdminError::MinInsyncAboveReplication {
                min_insync,
                replication_factor,
            })
        }
        _ => Ok(()),
    }
}

/// What the user can do about the broker's refusal to create `topic`.
fn refusal_hint(topic: &NewTopic<'_>, error: ProtocolError, message: Option<&str>) -> String {
    use ProtocolError as P;
    match error {
        P::InvalidConfig => {
            let mut hint = format!(
                "fix the --topic-config setting the broker names (the topic settings Kafka knows are at {TOPIC_CONFIGS_DOC})"
            );
            // A broker's message normally names the key; if it does not, list what was sent.
            let named = message.is_some_and(|m| topic.configs.iter().any(|c| m.contains(&c.key)));
            if !named && !topic.configs.is_empty() {
                let given: Vec<String> = topic
                    .configs
                    .iter()
                    .map(|c| format!("{}={}", c.key, Excerpt(&c.value)))
                    .collect();
                hint.push_str(&format!("; given: {}", given.join(", ")));
            }
            hint
        }
        P::InvalidReplicationFactor => format!(
            "replication factor {} needs that many brokers: give --replication-factor (admin.replication_factor) at most the number of brokers in the cluster",
            topic.replication_factor
        ),
        P::InvalidPartitions => format!(
            "{} partitions is not allowed here: give another --partitions (admin.partitions)",
            topic.partitions
        ),
        P::InvalidReplicaAssignment => {
            "the cluster cannot place the replicas; check that its brokers are up".into()
        }
        P::PolicyViolation => "the cluster's topic creation policy (create.topic.policy.class.name) refused these settings; choose settings it allows, or ask the cluster's operator".into(),
        P::InvalidTopicException => "the broker refuses this name (e.g. it collides with an existing topic when `.` and `_` count as the same); choose another name".into(),
        P::TopicAuthorizationFailed | P::ClusterAuthorizationFailed => "this client may not create topics; grant it CREATE on the cluster or the topic, or ask the cluster's operator to create the topic".into(),
        P::NotController | P::RequestTimedOut | P::ThrottlingQuotaExceeded => "the cluster is busy or electing a controller; try again later with --if-not-exists (the topic may have been created meanwhile)".into(),
        P::UnsupportedVersion => "the broker does not support CreateTopics version 4; it needs Kafka 2.4 or newer".into(),
        P::InvalidRequest => format!(
            "the broker found the request malformed; check the --topic-config settings against {TOPIC_CONFIGS_DOC}"
        ),
        _ => "see the broker's log for the reason".into(),
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
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
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

/// The `describe-topic` table: one row per partition; replicas and in-sync replicas are node
/// ids joined by `,` (an ISR shorter than REPLICAS means some copies are behind).
fn render_table(info: &TopicInfo) -> String {
    let rows: Vec<TableRow> = info.partitions.iter().map(TableRow::of).collect();
    let replicas_width = column_width("REPLICAS", rows.iter().map(|r| r.replicas.len()));
    let isr_width = column_width("ISR", rows.iter().map(|r| r.isr.len()));
    let mut out = format!(
        "topic {} ({} partitions)\n",
        info.name,
        info.partitions.len()
    );
    out.push_str(&format!(
        "{:>9} {:>6} {:<replicas_width$} {:<isr_width$} {:>12} {:>12}\n",
        "PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST", "LATEST"
    ));
    for (p, row) in info.partitions.iter().zip(&rows) {
        out.push_str(&format!(
            "{:>9} {:>6} {:<replicas_width$} {:<isr_width$} {:>12} {:>12}\n",
            p.partition, p.leader, row.replicas, row.isr, p.earliest, p.latest
        ));
    }
    out
}

/// The node id lists of one table row, joined for display.
struct TableRow {
    replicas: String,
    isr: String,
}

impl TableRow {
    fn of(p: &PartitionInfo) -> Self {
        Self {
            replicas: node_list(&p.replicas),
            isr: node_list(&p.isr),
        }
    }
}

/// `1,2,3`, or `-` for none.
fn node_list(ids: &[i32]) -> String {
    if ids.is_empty() {
        return "-".into();
    }
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn column_width(header: &str, cells: impl Iterator<Item = usize>) -> usize {
    cells.fold(header.len(), usize::max)
}

fn client_error(operation: &str, source: ClientError) -> KafkaError {
    KafkaError::Client {
        operation: operation.into(),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn topic_configs_split_at_the_first_equals_sign() {
        let configs = parse_topic_configs(&args(&["retention.ms=5", "a=b=c", "empty="])).unwrap();
        let pairs: Vec<(&str, &str)> = configs
            .iter()
            .map(|c| (c.key.as_str(), c.value.as_str()))
            .collect();
        assert_eq!(pairs, [("retention.ms", "5"), ("a", "b=c"), ("empty", "")]);
    }

    #[test]
    fn malformed_topic_configs_are_usage_errors() {
        let long = format!("k={}", "x".repeat(40_000));
        for bad in ["noequals", "=5", " retention.ms=5", "a b=1", long.as_str()] {
            let error = parse_topic_configs(&args(&[bad])).unwrap_err();
            assert!(error.is_usage(), "{bad}: {error}");
            assert!(error.to_string().len() < 400, "quoted in full: {error}");
        }
        let twice = parse_topic_configs(&args(&["a=1", "a=2"])).unwrap_err();
        assert!(twice.is_usage() && twice.to_string().contains("twice"));
    }

    #[test]
    fn min_insync_above_the_replication_factor_is_refused() {
        let configs = parse_topic_configs(&args(&["min.insync.replicas=2"])).unwrap();
        assert!(check_min_insync(&configs, 1).unwrap_err().is_usage());
        assert!(check_min_insync(&configs, 2).is_ok());
        let odd = parse_topic_configs(&args(&["min.insync.replicas=two"])).unwrap();
        assert!(check_min_insync(&odd, 1).is_ok(), "left for the broker");
    }

    #[test]
    fn table_shows_replicas_and_isr() {
        let info = TopicInfo {
            name: "t".into(),
            partitions: vec![PartitionInfo {
                partition: 0,
                leader: 2,
                replicas: vec![2, 3, 1],
                isr: vec![2, 3],
                earliest: 0,
                latest: 9,
            }],
        };
        let table = render_table(&info);
        let lines: Vec<Vec<&str>> = table
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec![
                    "PARTITION",
                    "LEADER",
                    "REPLICAS",
                    "ISR",
                    "EARLIEST",
                    "LATEST"
                ],
                vec!["0", "2", "2,3,1", "2,3", "0", "9"],
            ]
        );
    }
}
