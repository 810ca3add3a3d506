//! Fetching one partition's records over our own connection to its leader (Fetch, API key 1,
//! version 4: the oldest Kafka 4 answers and not yet a "flexible" version), read into a
//! [`RecordSet`] by [`super::records`] without an allocation per record.
//!
//! Why not rskafka's `fetch_records`: it decodes every record into its own key, value and
//! headers allocations, which took most of the consumer's time (BENCHMARKS.md, issue 14).
//! Offsets are still looked up through rskafka; only the fetch is ours.
//!
//! A [`PartitionReader`] keeps its connection between fetches and batches. It finds the
//! leader with a Metadata request, and forgets the connection on any failure, so the next
//! fetch asks again (a moved leader, a restarted broker).

use std::ops::Range;
use std::time::Duration;

use bytes::{BufMut, BytesMut};

use super::codec::{i16_, i32_, i64_, need, put_string, string};
use super::records::{AbortedTransaction, RecordError, RecordSet, read_batches};
use super::wire::{Connection, framed};
use super::{ConnectError, KafkaError, Security, metadata};
use crate::settings::KafkaSettings;

const API_KEY_FETCH: i16 = 1;
const API_VERSION: i16 = 4;
/// `read_committed`: records up to the last stable offset, aborted transactions listed.
const READ_COMMITTED: i8 = 1;
/// A reader's answer and decompression buffers are kept between fetches up to this size.
const KEPT_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// What went wrong with one fetch, beyond reaching the broker.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The broker answered with an error code for the partition.
    #[error("{broker} answered fetching {topic}/{partition}: {}", describe(*code))]
    Refused {
        broker: String,
        topic: String,
        partition: i32,
        code: i16,
    },
    #[error(
        "{topic}/{partition} has no leader right now (a broker is down, an election runs, or \
         the topic was deleted: check it with `factorypal admin describe-topic {topic}`)"
    )]
    NoLeader { topic: String, partition: i32 },
    #[error("{broker}'s fetch answer for {topic}/{partition} is garbled: {reason}")]
    Garbled {
        broker: String,
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("{topic}/{partition} from {broker}: {source}")]
    Records {
        broker: String,
        topic: String,
        partition: i32,
        #[source]
        source: RecordError,
    },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// Kafka's `OFFSET_OUT_OF_RANGE`.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;

impl FetchError {
    /// The broker's error code, if it refused the fetch.
    pub fn code(&self) -> Option<i16> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether another try may go through (a new leader, a broker back, a network blip).
    /// Authorization and an old message format are final; a corrupt batch is tried again
    /// (a corruption in transit goes away), until the retry deadline names it.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Refused { code, .. } => !matches!(code, 29 | 31 | 35),
            Self::NoLeader { .. } | Self::Garbled { .. } => true,
            Self::Records { source, .. } => source.is_retriable(),
            Self::Kafka(e) => e.is_retriable(),
        }
    }
}

/// A few of Kafka's error codes in words; the rest by number.
fn describe(code: i16) -> String {
    let what = match code {
        1 => "OFFSET_OUT_OF_RANGE",
        2 => "CORRUPT_MESSAGE (the broker's copy failed its check)",
        3 => "UNKNOWN_TOPIC_OR_PARTITION",
        5 => "LEADER_NOT_AVAILABLE",
        6 => "NOT_LEADER_OR_FOLLOWER (leadership moved)",
        7 => "REQUEST_TIMED_OUT",
        29 => "TOPIC_AUTHORIZATION_FAILED: grant this client's user Read on the topic",
        31 => "CLUSTER_AUTHORIZATION_FAILED",
        35 => "UNSUPPORTED_VERSION",
        56 => "KAFKA_STORAGE_ERROR",
        _ => return format!("Kafka error code {code}"),
    };
    format!("{what} (code {code})")
}

/// One partition's fetches, over a connection kept to its leader.
pub struct PartitionReader {
    topic: String,
    partition: i32,
    settings: KafkaSettings,
    security: Security,
    leader: Option<Connection>,
    /// The last answer, and decompressed batches: buffers kept between fetches, because
    /// fresh megabytes each time cost more in page faults than the fetch itself.
    answer: Vec<u8>,
    scratch: Vec<u8>,
}

/// What one fetch asks for.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Bytes the broker may return for the partition (a first batch larger than this still
    /// comes whole).
    pub max_bytes: i32,
    /// How long the broker may hold the fetch for data to arrive.
    pub max_wait: Duration,
}

impl PartitionReader {
    pub fn new(settings: &KafkaSettings, security: &Security, topic: &str, partition: i32) -> Self {
        Self {
            topic: topic.to_string(),
            partition,
            settings: settings.clone(),
            security: security.clone(),
            leader: None,
            answer: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Drops the connection (e.g. after a fetch was given up half-way): the next fetch opens
    /// a new one.
    pub fn disconnect(&mut self) {
        self.leader = None;
    }

    /// Fetches from `wanted.start` and reads the records of `wanted` the answer holds (none
    /// when the data there is only transaction markers, aborted or compacted away; then
    /// [`RecordSet::next_offset`] still moves on). On any failure the connection is dropped.
    pub async fn fetch(
        &mut self,
        wanted: Range<i64>,
        limits: FetchLimits,
    ) -> Result<RecordSet, FetchError> {
        let result = self.try_fetch(wanted, limits).await;
        if result.is_err() {
            self.leader = None;
        }
        result
    }

    async fn try_fetch(
        &mut self,
        wanted: Range<i64>,
        limits: FetchLimits,
    ) -> Result<RecordSet, FetchError> {
        let request = self.encode(wanted.start, limits);
        let mut body = std::mem::take(&mut self.answer);
        let reused = self.leader.as_ref().is_some_and(|c| !c.is_spoiled());
        let mut asked = self.ask(&request, &mut body).await;
        if reused && matches!(asked, Err(FetchError::Kafka(_))) {
            // A kept connection the broker closed while it idled (connections.max.idle.ms,
            // a restart): one new connection at once, before anything counts as a failure.
            self.leader = None;
            asked = self.ask(&request, &mut body).await;
        }
        let result = asked.and_then(|broker| self.read_answer(&body, wanted, broker));
        self.answer = body;
        // A rare huge batch must not keep its buffers for the rest of the run.
        for buffer in [&mut self.answer, &mut self.scratch] {
            if buffer.capacity() > KEPT_BUFFER_BYTES {
                *buffer = Vec::new();
            }
        }
        result
    }

    /// Sends `request` to the leader and reads the answer into `body`; returns the broker.
    async fn ask(&mut self, request: &[u8], body: &mut Vec<u8>) -> Result<String, FetchError> {
        let connection = self.connection().await?;
        let broker = connection.broker().to_string();
        connection
            .request_into(request, body)
            .await
            .map_err(connect_error)?;
        Ok(broker)
    }

    /// Reads the records of `wanted` out of a fetch answer from `broker`.
    fn read_answer(
        &mut self,
        body: &[u8],
        wanted: Range<i64>,
        broker: String,
    ) -> Result<RecordSet, FetchError> {
        let answer = decode_answer(body, &self.topic, self.partition).map_err(|reason| {
            FetchError::Garbled {
                broker: broker.clone(),
                topic: self.topic.clone(),
                partition: self.partition,
                reason,
            }
        })?;
        if answer.error_code != 0 {
            return Err(FetchError::Refused {
                broker,
                topic: self.topic.clone(),
                partition: self.partition,
                code: answer.error_code,
            });
        }
        let records = answer.records.unwrap_or_default();
        let records = read_batches(records, wanted, &answer.aborted, &mut self.scratch);
        records.map_err(|source| FetchError::Records {
            broker,
            topic: self.topic.clone(),
            partition: self.partition,
            source,
        })
    }

    /// The connection to the partition's leader, opened (after a Metadata request) if there
    /// is none.
    async fn connection(&mut self) -> Result<&mut Connection, FetchError> {
        if self.leader.as_ref().is_some_and(Connection::is_spoiled) {
            self.leader = None;
        }
        if self.leader.is_none() {
            let broker = self.find_leader().await?;
            let connection = Connection::open(&self.security, &self.settings.client_id, &broker)
                .await
                .map_err(connect_error)?;
            self.leader = Some(connection);
        }
        Ok(self.leader.as_mut().expect("just opened"))
    }

    /// `host:port` of the partition's leader, from the cluster's metadata.
    async fn find_leader(&self) -> Result<String, FetchError> {
        let topics = [self.topic.clone()];
        let meta = metadata::fetch(&self.settings, &self.security, Some(&topics)).await?;
        let no_leader = || FetchError::NoLeader {
            topic: self.topic.clone(),
            partition: self.partition,
        };
        let leader = meta
            .topics
            .iter()
            .find(|t| t.name == self.topic)
            .and_then(|t| t.partitions.iter().find(|p| p.partition == self.partition))
            .map(|p| p.leader)
            .filter(|&leader| leader >= 0)
            .ok_or_else(no_leader)?;
        let broker = meta
            .brokers
            .iter()
            .find(|b| b.node_id == leader)
            .ok_or_else(no_leader)?;
        Ok(format!("{}:{}", broker.host, broker.port))
    }

    fn encode(&self, offset: i64, limits: FetchLimits) -> Vec<u8> {
        let mut body = BytesMut::with_capacity(64 + self.topic.len());
        body.put_i32(-1); // replica id: a consumer
        body.put_i32(i32::try_from(limits.max_wait.as_millis()).unwrap_or(i32::MAX));
        body.put_i32(1); // min bytes: answer as soon as there is any
        body.put_i32(limits.max_bytes);
        body.put_i8(READ_COMMITTED);
        body.put_i32(1); // one topic
        put_string(&mut body, &self.topic);
        body.put_i32(1); // one partition
        body.put_i32(self.partition);
        body.put_i64(offset);
        body.put_i32(limits.max_bytes);
        framed(API_KEY_FETCH, API_VERSION, &self.settings.client_id, &body)
    }
}

fn connect_error(error: ConnectError) -> FetchError {
    FetchError::Kafka(KafkaError::Connect(Box::new(error)))
}

/// The one partition of a Fetch v4 answer, its records still unread.
struct Answer<'a> {
    error_code: i16,
    aborted: Vec<AbortedTransaction>,
    records: Option<&'a [u8]>,
}

/// Reads a Fetch v4 answer to a request for one partition; every read is bounds-checked.
fn decode_answer<'a>(mut buf: &'a [u8], topic: &str, partition: i32) -> Result<Answer<'a>, String> {
    let r = &mut buf;
    let _correlation_id = i32_(r)?;
    let _throttle_time_ms = i32_(r)?;
    if i32_(r)? != 1 {
        return Err("not one topic in the answer".into());
    }
    if string(r)?.as_deref() != Some(topic) {
        return Err(format!("the answer is not for topic {topic:?}"));
    }
    if i32_(r)? != 1 || i32_(r)? != partition {
        return Err(format!("the answer is not for partition {partition}"));
    }
    let error_code = i16_(r)?;
    let _high_watermark = i64_(r)?;
    let _last_stable_offset = i64_(r)?;
    let aborted_count = i32_(r)?;
    let mut aborted = Vec::new();
    if aborted_count > 0 {
        need(r, aborted_count as usize * 16)?;
        for _ in 0..aborted_count {
            aborted.push(AbortedTransaction {
                producer_id: i64_(r)?,
                first_offset: i64_(r)?,
            });
        }
    }
    let len = i32_(r)?;
    let records = if len < 0 {
        None
    } else {
        need(r, len as usize)?;
        Some(&r[..len as usize])
    };
    Ok(Answer {
        error_code,
        aborted,
        records,
    })
}
