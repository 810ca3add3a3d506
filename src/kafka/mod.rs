//! Everything that talks to Kafka at the client level: building an `rskafka` client that fails
//! within the configured timeout, secured as the settings say ([`security`]), topic-name
//! rules, and the requests rskafka does not send ([`metadata`], [`topic_config`], over our own
//! connection in `wire`). The consumer's fetches are ours too ([`fetch`], [`records`]):
//! rskafka's cost an allocation per record.

mod codec;
pub mod create_topics;
pub mod fetch;
pub(crate) mod metadata;
pub mod partitioner;
pub mod records;
pub mod security;
pub mod topic_config;
pub(crate) mod wire;

use std::future::Future;
use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder};

pub use security::{Security, SecurityError};
pub use wire::ConnectError;

use crate::backoff::{Retry, RetryError, RetryPolicy};
use crate::settings::KafkaSettings;

/// How long a just-created topic may take to appear in the metadata of the broker we ask.
pub const NEW_TOPIC_GRACE: Duration = Duration::from_secs(2);

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(
        "invalid topic name {name:?}: {why} (Kafka allows letters, digits, `.`, `_` and `-`, at most 249 characters, not `.` or `..`)"
    )]
    InvalidTopicName { name: String, why: &'static str },
    #[error(
        "could not reach Kafka at {bootstrap} within {timeout:?}: {reason}; check that the broker is running and that --bootstrap (kafka.bootstrap) is right"
    )]
    Unreachable {
        bootstrap: String,
        timeout: Duration,
        reason: String,
    },
    /// A failure no retry cures: a certificate, a login or a protocol that does not fit.
    /// Boxed, like every large source here: every result in the crate carries this type.
    #[error(transparent)]
    Connect(Box<wire::ConnectError>),
    #[error(transparent)]
    Security(Box<SecurityError>),
    #[error("{operation}: no answer within {timeout:?} (kafka.timeout); is the broker healthy?")]
    NoAnswer {
        operation: String,
        timeout: Duration,
    },
    #[error("{operation} failed: {source}{}", advice(source))]
    Client {
        operation: String,
        /// Boxed: rskafka's error is large, and every result in the crate carries this type.
        #[source]
        source: Box<rskafka::client::error::Error>,
    },
    /// A fetch of our own ([`fetch`]) the broker refused, or whose answer did not read.
    #[error(transparent)]
    Fetch(Box<fetch::FetchError>),
    #[error("metadata request to {broker} failed: {reason}")]
    Metadata { broker: String, reason: String },
    #[error("describing the configuration of topic {topic:?} at {broker} failed: {reason}")]
    DescribeConfigs {
        topic: String,
        broker: String,
        reason: String,
    },
}

impl From<fetch::FetchError> for KafkaError {
    fn from(error: fetch::FetchError) -> Self {
        match error {
            fetch::FetchError::Kafka(e) => e,
            other => Self::Fetch(Box::new(other)),
        }
    }
}

impl From<SecurityError> for KafkaError {
    fn from(error: SecurityError) -> Self {
        Self::Security(Box::new(error))
    }
}

/// Checks a topic name against Kafka's rules before any network call.
pub fn validate_topic_name(name: &str) -> Result<(), KafkaError> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "`.` and `..` are reserved"
    } else if name.len() > MAX_TOPIC_NAME_LEN {
        "it is longer than 249 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "it contains a character other than letters, digits, `.`, `_` and `-`"
    } else {
        return Ok(());
    };
    Err(KafkaError::InvalidTopicName {
        name: name.to_string(),
        why,
    })
}

/// A connected client plus the settings and security it was built from, so every call can be
/// bounded by the same timeout, every error can name the brokers, and our own requests
/// connect the same way rskafka does.
pub struct KafkaClient {
    pub client: Client,
    pub settings: KafkaSettings,
    pub security: Security,
}

impl KafkaClient {
    /// Loads the security settings, checks with one request of our own that a bootstrap broker
    /// answers and takes our login (so a refused password or an untrusted certificate fails at
    /// once, in words), then builds the rskafka client; all within `kafka.timeout` (plus a
    /// quarter of it if the probe took nearly all of it).
    pub async fn connect(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        let security = Security::load(settings)?;
        let timeout = settings.timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        reach(settings, &security).await?;
        // What is left of the timeout, but never so little that a broker which answered a
        // moment ago cannot be connected to again: at most a quarter of it past the deadline.
        let left = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .max(timeout / 4);
        let client = build_client(settings, &security, Some(timeout), left).await?;
        Ok(Self {
            client,
            settings: settings.clone(),
            security,
        })
    }

    /// A second rskafka client on the same cluster whose own retries are off, for callers that
    /// retry themselves (the producer's writer: a produce request resent blindly may be
    /// written twice).
    pub async fn client_without_retries(&self) -> Result<Client, KafkaError> {
        let timeout = self.settings.timeout();
        build_client(
            &self.settings,
            &self.security,
            Some(Duration::ZERO),
            timeout,
        )
        .await
    }

    /// Runs one rskafka call bounded by `kafka.timeout`, naming `operation` in any error.
    pub async fn call<T, F>(&self, operation: impl Into<String>, fut: F) -> Result<T, KafkaError>
    where
        F: Future<Output = Result<T, rskafka::client::error::Error>>,
    {
        bounded(self.settings.timeout(), &operation.into(), fut).await
    }

    /// The partition count of `topic`, or `None` if it does not exist. A topic created a
    /// moment ago can be missing from a broker's metadata for a short while, so a missing
    /// topic is asked about again for up to [`NEW_TOPIC_GRACE`] before it counts as missing.
    pub async fn partition_count(&self, topic: &str) -> Result<Option<i32>, KafkaError> {
        self.partition_count_within(topic, NEW_TOPIC_GRACE).await
    }

    /// [`KafkaClient::partition_count`] with the grace period given.
    pub async fn partition_count_within(
        &self,
        topic: &str,
        grace: Duration,
    ) -> Result<Option<i32>, KafkaError> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let meta = self.metadata(Some(&[topic.to_string()])).await?;
            let count = meta
                .topics
                .iter()
                .find(|t| t.name == topic && t.error_code != metadata::UNKNOWN_TOPIC)
                .map(|t| t.partitions.len() as i32)
                .filter(|&n| n > 0);
            if count.is_some() || tokio::time::Instant::now() >= deadline {
                return Ok(count);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Topic and partition metadata with leaders and internal flags.
    pub async fn metadata(
        &self,
        topics: Option<&[String]>,
    ) -> Result<metadata::Metadata, KafkaError> {
        metadata::fetch(&self.settings, &self.security, topics).await
    }
}

/// Asks the bootstrap brokers for (empty) metadata until one answers, within `kafka.timeout`:
/// a broker still starting is waited for, a refused login or certificate fails at once.
async fn reach(settings: &KafkaSettings, security: &Security) -> Result<(), KafkaError> {
    let timeout = settings.timeout();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(100);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let error = match tokio::time::timeout(left, metadata::fetch(settings, security, Some(&[])))
            .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => error,
            Err(_) => KafkaError::unreachable(settings, "no broker answered".into()),
        };
        if !error.is_retriable() || tokio::time::Instant::now() + pause >= deadline {
            return Err(error);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// An rskafka client, secured as `security` says, whose internal retries give up after
/// `retry_deadline`; building it fails within `bound`.
async fn build_client(
    settings: &KafkaSettings,
    security: &Security,
    retry_deadline: Option<Duration>,
    bound: Duration,
) -> Result<Client, KafkaError> {
    let backoff = BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: retry_deadline,
    };
    let builder = ClientBuilder::new(settings.bootstrap_brokers())
        .client_id(settings.client_id.as_str())
        .backoff_config(backoff);
    let builder = security.apply(builder);
    let unreachable = |reason: String| KafkaError::unreachable(settings, reason);
    tokio::time::timeout(bound, builder.build())
        .await
        .map_err(|_| unreachable("no broker answered".into()))?
        .map_err(|e| unreachable(e.to_string()))
}

/// Sends one framed request of ours to the first bootstrap broker that answers it.
pub(crate) async fn ask_bootstrap(
    settings: &KafkaSettings,
    security: &Security,
    request: &[u8],
) -> Result<wire::Answer, KafkaError> {
    wire::ask_bootstrap(settings, security, request)
        .await
        .map_err(|error| match error {
            wire::AskError::Fatal(e) => KafkaError::Connect(Box::new(e)),
            wire::AskError::NoneAnswered(reason) => KafkaError::unreachable(settings, reason),
        })
}

/// One rskafka call bounded by `timeout`, named `operation` in its error.
pub async fn bounded<T>(
    timeout: Duration,
    operation: &str,
    call: impl Future<Output = Result<T, rskafka::client::error::Error>>,
) -> Result<T, KafkaError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(KafkaError::Client {
            operation: operation.to_string(),
            source: Box::new(source),
        }),
        Err(_) => Err(KafkaError::NoAnswer {
            operation: operation.to_string(),
            timeout,
        }),
    }
}

/// Runs one rskafka call with backoff under `policy`, each attempt bounded by `timeout` and
/// named `what` in logs and errors. Only errors [`KafkaError::is_retriable`] accepts are
/// retried: a refused login or a missing permission fails at once.
pub async fn retry_call<T, F, Fut>(
    policy: RetryPolicy,
    timeout: Duration,
    what: &str,
    mut call: F,
) -> Result<T, RetryError<KafkaError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, rskafka::client::error::Error>>,
{
    retry_setup(policy, what, || bounded(timeout, what, call())).await
}

/// Runs a setup step made of several Kafka calls (each bounded already) with backoff under
/// `policy`, retrying what [`KafkaError::is_retriable`] accepts.
pub async fn retry_setup<T, F, Fut>(
    policy: RetryPolicy,
    what: &str,
    call: F,
) -> Result<T, RetryError<KafkaError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, KafkaError>>,
{
    crate::backoff::retry(setup_retry(policy), what, KafkaError::is_retriable, call).await
}

/// A setup call's outage shorter than this is routine (a new topic's leader election, a
/// restarting broker) and logged at debug level only.
const ROUTINE_OUTAGE: Duration = Duration::from_secs(2);

fn setup_retry(policy: RetryPolicy) -> Retry {
    Retry::new(policy).quiet_for(ROUTINE_OUTAGE)
}

impl KafkaError {
    /// No bootstrap broker of `settings` could be reached within `kafka.timeout`, and why.
    pub fn unreachable(settings: &KafkaSettings, reason: String) -> Self {
        Self::Unreachable {
            bootstrap: settings.bootstrap.clone(),
            timeout: settings.timeout(),
            reason,
        }
    }

    /// The error code the broker answered with, if this is a broker's answer.
    pub fn protocol_error(&self) -> Option<rskafka::client::error::ProtocolError> {
        match self {
            Self::Client { source, .. } => match **source {
                rskafka::client::error::Error::ServerError { protocol_error, .. } => {
                    Some(protocol_error)
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether waiting and trying again can cure this error. The one place that decides it for
    /// Kafka: network trouble, timeouts and a cluster that is electing leaders are retried;
    /// a refused login, a missing permission, an invalid request are not.
    /// The error code a broker refused one of our fetches with.
    pub fn fetch_code(&self) -> Option<i16> {
        match self {
            Self::Fetch(e) => e.code(),
            _ => None,
        }
    }

    pub fn is_retriable(&self) -> bool {
        match self {
            Self::InvalidTopicName { .. } | Self::Security(_) => false,
            Self::Connect(e) => e.is_retriable(),
            Self::Client { source, .. } => client_error_is_retriable(source),
            Self::Fetch(e) => e.is_retriable(),
            Self::Unreachable { .. }
            | Self::NoAnswer { .. }
            | Self::Metadata { .. }
            | Self::DescribeConfigs { .. } => true,
        }
    }
}

impl crate::failure::Classify for KafkaError {
    fn is_usage(&self) -> bool {
        matches!(self, Self::InvalidTopicName { .. } | Self::Security(_))
    }
}

/// What to do about a broker's answer whose name alone does not say it.
fn advice(error: &rskafka::client::error::Error) -> &'static str {
    use rskafka::client::error::{Error, ProtocolError as P};
    match error {
        Error::ServerError {
            protocol_error: P::NotEnoughReplicas | P::NotEnoughReplicasAfterAppend,
            ..
        } => {
            "; fewer replicas of the partition are in sync than the topic's min.insync.replicas: brokers are down or lagging; bring them back (the producer waits for them until producer.retry_deadline)"
        }
        _ => "",
    }
}

/// See [`KafkaError::is_retriable`].
fn client_error_is_retriable(error: &rskafka::client::error::Error) -> bool {
    use rskafka::client::error::{Error, ProtocolError as P};
    match error {
        Error::ServerError { protocol_error, .. } => !matches!(
            protocol_error,
            P::TopicAuthorizationFailed
                | P::GroupAuthorizationFailed
                | P::ClusterAuthorizationFailed
                | P::TransactionalIdAuthorizationFailed
                | P::DelegationTokenAuthorizationFailed
                | P::SaslAuthenticationFailed
                | P::UnsupportedSaslMechanism
                | P::IllegalSaslState
                | P::InvalidTopicException
                | P::InvalidRecord
                | P::MessageTooLarge
                | P::RecordListTooLarge
                | P::InvalidRequiredAcks
                | P::UnsupportedVersion
                | P::UnsupportedForMessageFormat
                | P::PolicyViolation
                | P::InvalidConfig
                | P::InvalidPartitions
                | P::InvalidReplicationFactor
                | P::InvalidReplicaAssignment
                | P::TopicAlreadyExists
        ),
        Error::Connection(rskafka::ConnectionError::SaslFailed(_)) => false,
        _ => true,
    }
}

/// The timeout to hand to brokers for requests that take one (create/delete topic), in ms.
pub fn broker_timeout_ms(settings: &KafkaSettings) -> i32 {
    i32::try_from(settings.timeout().as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in ["metrics", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "slash/",
            "ümlaut",
            &"x".repeat(250),
        ] {
            assert!(validate_topic_name(bad).is_err(), "{bad}");
        }
    }
}
