//! Before any source reads: which sources the command line chose, their URLs checked, their
//! topics present (or created with `--create-topics`), and the Kafka client that writes.

use std::time::Duration;

use rskafka::client::partition::Compression;

use super::url::StreamUrl;
use super::{ProduceError, ProduceOptions};
use crate::admin;
use crate::backoff::{Retry, RetryError};
use crate::excerpt::redact_url;
use crate::kafka::{KafkaClient, validate_topic_name};
use crate::settings::{CompressionCodec, Settings, SourceSettings};

/// One source, resolved against the settings.
#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub settings: SourceSettings,
    pub url: StreamUrl,
    /// The topic's partition count, once [`ensure_topic`] has looked.
    pub partitions: i32,
    /// The largest batch the topic takes, once [`batch_limit`] has asked.
    pub batch_limit: usize,
}

/// Picks the sources and checks everything that needs no network.
pub fn plan(
    settings: &Settings,
    options: &ProduceOptions,
) -> Result<Vec<SourcePlan>, ProduceError> {
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
        .map(|source| plan_source(settings, source))
        .collect()
}

fn plan_source(settings: &Settings, source: &SourceSettings) -> Result<SourcePlan, ProduceError> {
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
        url: redact_url(&url),
        why,
    })?;
    Ok(SourcePlan {
        settings: source.clone(),
        url: parsed,
        partitions: 0,
        batch_limit: usize::MAX,
    })
}

/// The topic's partition count, creating the topic first with `--create-topics`.
pub async fn ensure_topic(
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
    let what = format!("waiting for the new topic {topic}'s partitions");
    loop {
        if let Some(n) = kafka.partition_count(topic).await? {
            return Ok(n);
        }
        let missing = ProduceError::NewTopicMissing {
            source_name: plan.settings.name.clone(),
            topic: topic.clone(),
        };
        retry
            .pause(&what, missing, |_| true)
            .await
            .map_err(RetryError::into_last)?;
    }
}

pub fn compression(codec: CompressionCodec) -> Compression {
    match codec {
        CompressionCodec::None => Compression::NoCompression,
        CompressionCodec::Gzip => Compression::Gzip,
        CompressionCodec::Lz4 => Compression::Lz4,
        CompressionCodec::Snappy => Compression::Snappy,
        CompressionCodec::Zstd => Compression::Zstd,
    }
}

/// The largest batch `topic` accepts, from its `max.message.bytes` less a batch's own header,
/// so batches are capped below it rather than refused and split. If the broker does not say
/// (an old broker, no permission to describe configs), there is no cap and a refused batch is
/// split (see [`super::writer`]).
pub async fn batch_limit(kafka: &KafkaClient, source_name: &str, topic: &str) -> usize {
    let described = crate::kafka::topic_config::describe(
        &kafka.settings,
        &kafka.security,
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
