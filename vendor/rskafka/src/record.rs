use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// High-level record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, Vec<u8>>,
    pub timestamp: DateTime<Utc>,
}

impl Record {
    /// Returns the approximate uncompressed size of this [`Record`]
    pub fn approximate_size(&self) -> usize {
        self.key.as_ref().map(|k| k.len()).unwrap_or_default()
            + self.value.as_ref().map(|v| v.len()).unwrap_or_default()
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

/// Record that has offset information attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordAndOffset {
    pub record: Record,
    pub offset: i64,
}

/// Records already in Kafka's wire form (record format v2, each with its length), for
/// [`PartitionClient::produce_encoded`](crate::client::partition::PartitionClient::produce_encoded):
/// one buffer for a whole batch instead of several allocations per [`Record`].
///
/// factorypal's addition to rskafka 0.6.0 (see vendor/README.md).
#[derive(Debug, Clone, Default)]
pub struct EncodedRecords {
    pub(crate) bytes: Vec<u8>,
    pub(crate) count: i32,
}

impl EncodedRecords {
    /// No records yet, written into `buffer` (cleared; its capacity is kept).
    pub fn with_buffer(mut buffer: Vec<u8>) -> Self {
        buffer.clear();
        Self {
            bytes: buffer,
            count: 0,
        }
    }

    /// Appends a record. Every record of a batch has the batch's timestamp (see
    /// [`PartitionClient::produce_encoded`](crate::client::partition::PartitionClient::produce_encoded)).
    pub fn push(&mut self, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) {
        let offset_delta = i64::from(self.count);
        let mut body = 1 // attributes
            + varint_len(0) // timestampDelta
            + varint_len(offset_delta)
            + bytes_len(key)
            + bytes_len(value)
            + varint_len(headers.len() as i64);
        for (k, v) in headers {
            body += bytes_len(Some(k.as_bytes())) + bytes_len(Some(v));
        }
        let b = &mut self.bytes;
        b.reserve(body + 5);
        put_varint(b, body as i64);
        b.push(0);
        put_varint(b, 0);
        put_varint(b, offset_delta);
        put_bytes(b, key);
        put_bytes(b, value);
        put_varint(b, headers.len() as i64);
        for (k, v) in headers {
            put_bytes(b, Some(k.as_bytes()));
            put_bytes(b, Some(v));
        }
        self.count += 1;
    }

    /// Records pushed.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of the encoded records (uncompressed).
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// The buffer, to write the next batch into.
    pub fn into_buffer(self) -> Vec<u8> {
        self.bytes
    }
}

/// Zigzag varint, as Kafka's record format writes its lengths and deltas.
fn put_varint(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (z | 1).leading_zeros() as usize).div_ceil(7)
}

fn bytes_len(bytes: Option<&[u8]>) -> usize {
    match bytes {
        Some(b) => varint_len(b.len() as i64) + b.len(),
        None => varint_len(-1),
    }
}

fn put_bytes(buf: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(b) => {
            put_varint(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
        None => put_varint(buf, -1),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn test_approximate_size() {
        let record = Record {
            key: Some(vec![0; 23]),
            value: Some(vec![0; 45]),
            headers: vec![("a".to_string(), vec![0; 5]), ("b".to_string(), vec![0; 7])]
                .into_iter()
                .collect(),
            timestamp: Utc.timestamp_millis_opt(1337).unwrap(),
        };

        assert_eq!(record.approximate_size(), 23 + 45 + 1 + 5 + 1 + 7);
    }
}
