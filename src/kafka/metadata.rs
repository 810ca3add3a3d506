//! A minimal Kafka Metadata request (API key 3, version 4), written here because rskafka keeps
//! partition leaders and the `is_internal` flag to itself and `admin describe-topic` needs them.
//! Kafka 4.0 removed versions 0–3 (KIP-896); 4 is the oldest it answers, is not yet a
//! "flexible" (tagged-field) version, and older brokers (since 1.0) answer it too.

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::KafkaError;
use crate::settings::KafkaSettings;

const API_KEY_METADATA: i16 = 3;
const API_VERSION: i16 = 4;
/// A metadata answer for thousands of topics fits easily; more means a corrupt length prefix.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

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
    topics: Option<&[String]>,
) -> Result<Metadata, KafkaError> {
    let timeout = settings.timeout();
    let request = encode_request(&settings.client_id, topics);
    let mut last_error = None;
    for broker in settings.bootstrap_brokers() {
        match tokio::time::timeout(timeout, exchange(&broker, &request)).await {
            Ok(Ok(body)) => {
                return decode_response(&body).map_err(|reason| KafkaError::Metadata {
                    broker: broker.clone(),
                    reason,
                });
            }
            Ok(Err(e)) => last_error = Some(e.to_string()),
            Err(_) => last_error = Some(format!("no answer within {timeout:?}")),
        }
    }
    Err(KafkaError::Unreachable {
        bootstrap: settings.bootstrap.clone(),
        timeout,
        reason: last_error.unwrap_or_else(|| "no bootstrap broker configured".into()),
    })
}

pub(super) async fn exchange(broker: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(broker).await?;
    stream.write_all(request).await?;
    let len = stream.read_i32().await?;
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_RESPONSE_BYTES)
        .ok_or_else(|| std::io::Error::other(format!("bad response length {len}")))?;
    let mut body = vec![0; len];
    stream.read_exact(&mut body).await?;
    Ok(body)
}

fn encode_request(client_id: &str, topics: Option<&[String]>) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i16(API_KEY_METADATA);
    body.put_i16(API_VERSION);
    body.put_i32(1); // correlation id: one request per connection
    put_string(&mut body, client_id);
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
    let mut framed = Vec::with_capacity(body.len() + 4);
    framed.put_i32(body.len() as i32);
    framed.extend_from_slice(&body);
    framed
}

pub(super) fn put_string(buf: &mut BytesMut, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    buf.put_i16(bytes.len() as i16);
    buf.put_slice(bytes);
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

pub(super) fn need(r: &[u8], n: usize) -> Result<(), String> {
    if r.remaining() < n {
        Err("response ended early".into())
    } else {
        Ok(())
    }
}

pub(super) fn i8_(r: &mut &[u8]) -> Result<i8, String> {
    need(r, 1)?;
    Ok(r.get_i8())
}

pub(super) fn i16_(r: &mut &[u8]) -> Result<i16, String> {
    need(r, 2)?;
    Ok(r.get_i16())
}

pub(super) fn i32_(r: &mut &[u8]) -> Result<i32, String> {
    need(r, 4)?;
    Ok(r.get_i32())
}

pub(super) fn string(r: &mut &[u8]) -> Result<Option<String>, String> {
    let len = i16_(r)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(r, len)?;
    let s = String::from_utf8_lossy(&r[..len]).into_owned();
    r.advance(len);
    Ok(Some(s))
}

pub(super) fn array<T>(
    r: &mut &[u8],
    mut item: impl FnMut(&mut &[u8]) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let len = i32_(r)?;
    if len < 0 {
        return Ok(Vec::new());
    }
    // Each element is at least 4 bytes: a count larger than what is left is garbage.
    need(r, len as usize)?;
    (0..len).map(|_| item(r)).collect()
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
