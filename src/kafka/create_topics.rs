//! A minimal Kafka CreateTopics request (API key 19, version 4) for one topic with its configs,
//! written here because rskafka's `ControllerClient::create_topic` sends no configs and
//! `admin create-topic --topic-config` must (e.g. `min.insync.replicas`, `retention.ms`).
//!
//! Version 4 is the newest version that is not yet "flexible" (tagged fields start at 5); Kafka
//! 4 answers versions 2–7 (KIP-896 removed 0–1), brokers since 2.4 answer 4. The request goes
//! to a bootstrap broker, which forwards it to the active controller (KRaft). This module owns
//! the wire format (pure [`encode_request`] / [`decode_response`]) and the one exchange with a
//! broker ([`create`]); what a broker's error code means to the user is `admin`'s business.

use bytes::{BufMut, BytesMut};
use rskafka::client::error::ProtocolError;

use super::KafkaError;
use super::codec::{array, i16_, i32_, put_string, string};
use super::security::Security;
use super::wire::{self, ConnectError};
use crate::excerpt::Excerpt;
use crate::settings::KafkaSettings;

const API_KEY_CREATE_TOPICS: i16 = 19;
const API_VERSION: i16 = 4;

/// One `KEY=VALUE` topic setting sent with the request, e.g. `retention.ms=86400000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub key: String,
    pub value: String,
}

/// The topic to create.
#[derive(Debug, Clone, Copy)]
pub struct NewTopic<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: &'a [TopicConfig],
}

/// The broker's verdict on one topic of the request.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicOutcome {
    pub name: String,
    /// `None` when the topic was created.
    pub error: Option<ProtocolError>,
    /// The broker's explanation of `error`, if it gave one.
    pub message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateTopicsError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error(
        "creating topic {topic:?}: the answer of {broker} is unreadable ({reason}); is it a Kafka broker of version 2.4 or newer?"
    )]
    BadAnswer {
        topic: String,
        broker: String,
        reason: String,
    },
}

/// Asks a bootstrap broker to create `topic`, waiting up to `kafka.timeout` for it (the broker
/// is given the same time). Creating is not idempotent, so another bootstrap broker is tried
/// only when one refused the connection: a request that may have arrived is never sent twice.
pub async fn create(
    settings: &KafkaSettings,
    security: &Security,
    topic: &NewTopic<'_>,
) -> Result<TopicOutcome, CreateTopicsError> {
    let timeout = settings.timeout();
    let request = encode_request(
        &settings.client_id,
        topic,
        super::broker_timeout_ms(settings),
    );
    let mut last_error = None;
    for broker in settings.bootstrap_brokers() {
        let asked = wire::exchange(security, &settings.client_id, &broker, &request);
        match tokio::time::timeout(timeout, asked).await {
            Ok(Ok(body)) => {
                return decode_response(&body, topic.name).map_err(|reason| {
                    CreateTopicsError::BadAnswer {
                        topic: topic.name.to_string(),
                        broker: broker.clone(),
                        reason,
                    }
                });
            }
            Ok(Err(e)) if refused(&e) => last_error = Some(e.to_string()),
            Ok(Err(e)) if !e.is_retriable() => return Err(KafkaError::Connect(Box::new(e)).into()),
            Ok(Err(e)) => return Err(KafkaError::unreachable(settings, e.to_string()).into()),
            Err(_) => {
                return Err(KafkaError::NoAnswer {
                    operation: format!("create topic {} at {broker}", topic.name),
                    timeout,
                }
                .into());
            }
        }
    }
    Err(KafkaError::unreachable(
        settings,
        last_error.unwrap_or_else(|| "no bootstrap broker configured".into()),
    )
    .into())
}

/// The broker refused the TCP connection: nothing was sent, another broker may be asked.
fn refused(error: &ConnectError) -> bool {
    matches!(error, ConnectError::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// The framed request: size, header v1 (api key, version, correlation id, client id), then
/// `topics`, `timeout_ms`, `validate_only`.
pub fn encode_request(client_id: &str, topic: &NewTopic<'_>, timeout_ms: i32) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(1); // one topic
    put_string(&mut body, topic.name);
    body.put_i32(topic.partitions);
    body.put_i16(topic.replication_factor);
    body.put_i32(0); // assignments: none, the controller places the replicas
    body.put_i32(topic.configs.len() as i32);
    for config in topic.configs {
        put_string(&mut body, &config.key);
        put_string(&mut body, &config.value);
    }
    body.put_i32(timeout_ms);
    body.put_i8(0); // validate_only: no, create it
    wire::framed(API_KEY_CREATE_TOPICS, API_VERSION, client_id, &body)
}

/// Reads a response body (after the size) and picks the result for `topic`. Every read is
/// bounds-checked: a short or garbled answer is an error, never a panic.
pub fn decode_response(mut buf: &[u8], topic: &str) -> Result<TopicOutcome, String> {
    let r = &mut buf;
    let _correlation_id = i32_(r)?;
    let _throttle_time_ms = i32_(r)?;
    let results = array(r, |r| {
        let name = string(r)?.unwrap_or_default();
        let code = i16_(r)?;
        let message = string(r)?;
        Ok(TopicOutcome {
            name,
            error: ProtocolError::new(code),
            message,
        })
    })?;
    results
        .into_iter()
        .find(|t| t.name == topic)
        .ok_or_else(|| format!("it has no result for topic {}", Excerpt(topic)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(name: &str, code: i16, message: Option<&str>) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i32(1); // correlation
        b.put_i32(0); // throttle
        b.put_i32(1); // topics
        put_string(&mut b, name);
        b.put_i16(code);
        match message {
            Some(m) => put_string(&mut b, m),
            None => b.put_i16(-1),
        }
        b
    }

    #[test]
    fn encodes_version_4_with_configs() {
        let configs = [TopicConfig {
            key: "retention.ms".into(),
            value: "5".into(),
        }];
        let topic = NewTopic {
            name: "t",
            partitions: 3,
            replication_factor: 2,
            configs: &configs,
        };
        let framed = encode_request("c", &topic, 1000);
        let mut expected: Vec<u8> = Vec::new();
        expected.extend_from_slice(&[0, 19, 0, 4, 0, 0, 0, 1, 0, 1, b'c']); // header
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 1, b't']); // one topic named t
        expected.extend_from_slice(&[0, 0, 0, 3, 0, 2]); // partitions, replication factor
        expected.extend_from_slice(&[0, 0, 0, 0]); // no assignments
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 12]); // one config, key length
        expected.extend_from_slice(b"retention.ms");
        expected.extend_from_slice(&[0, 1, b'5']);
        expected.extend_from_slice(&[0, 0, 0x03, 0xe8, 0]); // timeout 1000 ms, validate_only
        assert_eq!(&framed[4..], &expected[..]);
        assert_eq!(&framed[..4], &(expected.len() as i32).to_be_bytes());
    }

    #[test]
    fn decodes_success_and_errors() {
        let ok = decode_response(&response("t", 0, None), "t").unwrap();
        assert_eq!((ok.error, ok.message), (None, None));
        let bad = decode_response(&response("t", 40, Some("Invalid value x")), "t").unwrap();
        assert_eq!(bad.error, Some(ProtocolError::InvalidConfig));
        assert_eq!(bad.message.as_deref(), Some("Invalid value x"));
        let unknown = decode_response(&response("t", 9999, None), "t").unwrap();
        assert_eq!(unknown.error, Some(ProtocolError::Unknown(9999)));
        assert!(decode_response(&response("other", 0, None), "t").is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = response("t", 36, Some("Topic 't' already exists."));
        for cut in 0..b.len() {
            assert!(decode_response(&b[..cut], "t").is_err(), "cut at {cut}");
        }
        // A count far beyond the bytes left is refused before anything is allocated for it.
        let mut huge = BytesMut::new();
        huge.put_i32(1);
        huge.put_i32(0);
        huge.put_i32(i32::MAX);
        assert!(decode_response(&huge, "t").is_err());
    }
}
