//! A minimal Kafka Metadata request (API key 3, version 4), written here because rskafka keeps
//! partition leaders and the `is_internal` flag to itself and `admin describe-topic` needs them.
//! Kafka 4.0 removed versions 0–3 (KIP-896); 4 is the oldest it answers, is not yet a
//! "flexible" (tagged-field) version, and older brokers (since 1.0) answer it too.

use bytes::{BufMut, BytesMut};

use super::KafkaError;
use super::codec::{array, i8_, i16_, i32_, put_string, string};
use super::security::Security;
use super::wire::framed;
use crate::settings::KafkaSettings;

const API_KEY_METADATA: i16 = 3;
const API_VERSION: i16 = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub brokers: Vec<BrokerMeta>,
    pub topics: Vec<TopicMeta>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerMeta {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopicMeta {
    /// Kafka's error code for this topic: 0 is fine, 3 is "unknown topic".
    pub error_code: i16,
    pub name: String,
    pub is_internal: bool,
    pub partitions: Vec<PartitionMeta>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PartitionMeta {
    pub error_code: i16,
    pub partition: i32,
    /// The leader's node id, `-1` when the partition has none right now.
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// Kafka's `UNKNOWN_TOPIC_OR_PARTITION` error code.
pub const UNKNOWN_TOPIC: i16 = 3;

/// Asks the first bootstrap broker that answers; `topics = None` asks for all topics.
pub async fn fetch(
    settings: &KafkaSettings,
    security: &Security,
    topics: Option<&[String]>,
) -> Result<Metadata, KafkaError> {
    let request = encode_request(&settings.client_id, topics);
    let answer = super::ask_bootstrap(settings, security, &request).await?;
    decode_response(&answer.body).map_err(|reason| KafkaError::Metadata {
        broker: answer.broker,
        reason,
    })
}

fn encode_request(client_id: &str, topics: Option<&[String]>) -> Vec<u8> {
    let mut body = BytesMut::new();
    match topics {
        None => body.put_i32(-1), // null array: all topics
        Some(topics) => {
            body.put_i32(topics.len() as i32);
            for t in topics {
                put_string(&mut body, t);
            }
        }
    }
    body.put_i8(0); // allow_auto_topic_creation: never, asking must not create
    framed(API_KEY_METADATA, API_VERSION, client_id, &body)
}

/// Reads a response body; every read is bounds-checked so a short or garbled answer is an
/// error, never a panic.
fn decode_response(mut buf: &[u8]) -> Result<Metadata, String> {
    let r = &mut buf;
    let _correlation_id = i32_(r)?;
    let _throttle_time_ms = i32_(r)?;
    let brokers = array(r, |r| {
        let node_id = i32_(r)?;
        let host = string(r)?.unwrap_or_default();
        let port = i32_(r)?;
        let _rack = string(r)?;
        Ok(BrokerMeta {
            node_id,
            host,
            port,
        })
    })?;
    let _cluster_id = string(r)?;
    let _controller_id = i32_(r)?;
    let topics = array(r, |r| {
        let error_code = i16_(r)?;
        let name = string(r)?.unwrap_or_default();
        let is_internal = i8_(r)? != 0;
        let partitions = array(r, |r| {
            Ok(PartitionMeta {
                error_code: i16_(r)?,
                partition: i32_(r)?,
                leader: i32_(r)?,
                replicas: array(r, i32_)?,
                isr: array(r, i32_)?,
            })
        })?;
        Ok(TopicMeta {
            error_code,
            name,
            is_internal,
            partitions,
        })
    })?;
    Ok(Metadata { brokers, topics })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_hand_built_response() {
        let mut b = BytesMut::new();
        b.put_i32(1); // correlation
        b.put_i32(0); // throttle
        b.put_i32(1); // brokers
        b.put_i32(1);
        put_string(&mut b, "127.0.0.1");
        b.put_i32(9092);
        b.put_i16(-1); // rack null
        put_string(&mut b, "cluster");
        b.put_i32(1); // controller
        b.put_i32(1); // topics
        b.put_i16(0);
        put_string(&mut b, "metrics");
        b.put_i8(0);
        b.put_i32(1); // partitions
        b.put_i16(0);
        b.put_i32(0);
        b.put_i32(1);
        b.put_i32(1);
        b.put_i32(1);
        b.put_i32(1);
        b.put_i32(1);
        let m = decode_response(&b).unwrap();
        assert_eq!(m.brokers[0].port, 9092);
        assert_eq!(m.topics[0].name, "metrics");
        assert_eq!(m.topics[0].partitions[0].leader, 1);
        // Every truncation is an error, not a panic.
        for cut in 0..b.len() {
            assert!(decode_response(&b[..cut]).is_err());
        }
    }
}
