//! A minimal Kafka DescribeConfigs request (API key 32, version 1) for one topic's settings,
//! written here because rskafka has none. The producer asks for `max.message.bytes` before
//! sending: the broker refuses any record batch larger than that, so batches are capped below
//! it instead of being refused and split. Version 1 is the oldest Kafka 4 answers (KIP-896)
//! and is not yet a "flexible" (tagged-field) version.

use bytes::{BufMut, BytesMut};

use super::KafkaError;
use super::codec::{array, i8_, i16_, i32_, put_string, string};
use super::security::Security;
use super::wire::framed;
use crate::settings::KafkaSettings;

const API_KEY_DESCRIBE_CONFIGS: i16 = 32;
const API_VERSION: i16 = 1;
/// `ConfigResource.Type.TOPIC`.
const RESOURCE_TOPIC: i8 = 2;

/// The topic setting that bounds a record batch, in bytes.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";

/// The value of `key` for `topic` (`None` if the broker does not report it), from the first
/// bootstrap broker that answers.
pub async fn describe(
    settings: &KafkaSettings,
    security: &Security,
    topic: &str,
    key: &str,
) -> Result<Option<String>, KafkaError> {
    let request = encode_request(&settings.client_id, topic, key);
    let answer = super::ask_bootstrap(settings, security, &request).await?;
    decode_response(&answer.body, key).map_err(|reason| KafkaError::DescribeConfigs {
        topic: topic.to_string(),
        broker: answer.broker,
        reason,
    })
}

fn encode_request(client_id: &str, topic: &str, key: &str) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(1); // one resource
    body.put_i8(RESOURCE_TOPIC);
    put_string(&mut body, topic);
    body.put_i32(1); // one key
    put_string(&mut body, key);
    body.put_i8(0); // include_synonyms: no
    framed(API_KEY_DESCRIBE_CONFIGS, API_VERSION, client_id, &body)
}

/// One config entry of the answer.
struct Entry {
    name: String,
    value: Option<String>,
}

/// One resource of the answer.
struct Resource {
    error_code: i16,
    error_message: Option<String>,
    configs: Vec<Entry>,
}

fn decode_response(mut buf: &[u8], key: &str) -> Result<Option<String>, String> {
    let r = &mut buf;
    let _correlation_id = i32_(r)?;
    let _throttle_time_ms = i32_(r)?;
    let resources = array(r, |r| {
        let error_code = i16_(r)?;
        let error_message = string(r)?;
        let _resource_type = i8_(r)?;
        let _resource_name = string(r)?;
        let configs = array(r, |r| {
            let name = string(r)?.unwrap_or_default();
            let value = string(r)?;
            let _read_only = i8_(r)?;
            let _source = i8_(r)?;
            let _sensitive = i8_(r)?;
            let _synonyms = array(r, |r| {
                string(r)?;
                string(r)?;
                i8_(r)
            })?;
            Ok(Entry { name, value })
        })?;
        Ok(Resource {
            error_code,
            error_message,
            configs,
        })
    })?;
    let resource = resources
        .into_iter()
        .next()
        .ok_or("no resource in the answer")?;
    if resource.error_code != 0 {
        return Err(format!(
            "error code {}: {}",
            resource.error_code,
            resource.error_message.unwrap_or_default()
        ));
    }
    Ok(resource
        .configs
        .into_iter()
        .find(|e| e.name == key)
        .and_then(|e| e.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_hand_built_response() {
        let mut b = BytesMut::new();
        b.put_i32(1); // correlation
        b.put_i32(0); // throttle
        b.put_i32(1); // resources
        b.put_i16(0);
        b.put_i16(-1); // no error message
        b.put_i8(RESOURCE_TOPIC);
        put_string(&mut b, "metrics");
        b.put_i32(1); // configs
        put_string(&mut b, MAX_MESSAGE_BYTES);
        put_string(&mut b, "4096");
        b.put_i8(0);
        b.put_i8(1);
        b.put_i8(0);
        b.put_i32(0); // synonyms
        assert_eq!(
            decode_response(&b, MAX_MESSAGE_BYTES).unwrap().as_deref(),
            Some("4096")
        );
        assert_eq!(decode_response(&b, "retention.ms").unwrap(), None);
        for cut in 0..b.len() {
            assert!(decode_response(&b[..cut], MAX_MESSAGE_BYTES).is_err());
        }
    }
}
