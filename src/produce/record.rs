//! One API line → one Kafka record: validated, keyed and placed on its partition exactly as the
//! Java client would place it.

use std::fmt;

use bytes::Bytes;
use rskafka::record::EncodedRecords;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::json::{FieldValue, FlatScan, compact_into, scan_flat_object};
use crate::kafka::partitioner::partition_for_key;

/// Header naming the source a record came from.
pub const HEADER_SOURCE: &str = "source";
/// Header with the record's 0-based position in the API stream (decimal text).
pub const HEADER_SOURCE_OFFSET: &str = "source-offset";

/// Why a line cannot become a record. The line is skipped (or stops the producer in `fail`
/// mode); it never reaches Kafka.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadRecord {
    /// serde_json's message (which says where, not what): capped like any quoted value.
    #[error("not valid JSON ({0})")]
    NotJson(String),
    #[error("not a JSON object")]
    NotObject,
    #[error("no key field `{0}`")]
    MissingKey(String),
    #[error("key field `{field}` is {found}; a key must be a string, number or boolean")]
    BadKey { field: String, found: &'static str },
    /// Found only when writing: the broker refused the record alone (`MessageTooLarge`), so
    /// no attempt can ever write it.
    #[error(
        "{bytes} bytes, more than topic {topic:?} accepts (its max.message.bytes; raise it to keep such records)"
    )]
    TooLarge { bytes: usize, topic: String },
    /// Found while reading: the line grew past `producer.max_line_bytes` before its newline
    /// (`seen` bytes had arrived), so it was discarded as it streamed in, never parsed.
    #[error(
        "longer than producer.max_line_bytes ({limit} bytes; {seen} bytes read before giving up), discarded up to its newline"
    )]
    LineTooLong { seen: usize, limit: usize },
}

impl BadRecord {
    /// A parse failure, its message capped like any quoted value.
    fn not_json(error: &serde_json::Error) -> Self {
        let message = error.to_string();
        if message.len() <= crate::excerpt::MAX_QUOTED_BYTES {
            Self::NotJson(message)
        } else {
            Self::NotJson(crate::excerpt::Excerpt(&message).to_string())
        }
    }

    /// The kind of fault without the particulars, for counts by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotJson(_) => "not valid JSON",
            Self::NotObject => "not a JSON object",
            Self::MissingKey(_) => "no key field",
            Self::BadKey { .. } => "a key that is not a string, number or boolean",
            Self::TooLarge { .. } => "more than the topic's max.message.bytes",
            Self::LineTooLong { .. } => "longer than producer.max_line_bytes",
        }
    }
}

/// A record ready for its partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Position in the API stream.
    pub offset: u64,
    pub partition: i32,
    pub key: Option<Bytes>,
    /// The JSON object, compact.
    pub value: Bytes,
}

/// Per-record bytes beyond key and value in a batch (varints, headers, attributes), for sizing
/// batches; an estimate on the high side.
const RECORD_OVERHEAD: usize = 64;

impl Prepared {
    pub fn approximate_size(&self) -> usize {
        self.value.len() + self.key.as_ref().map_or(0, Bytes::len) + RECORD_OVERHEAD
    }

    /// Appends this record, with its `source` and `source-offset` headers, to a batch in
    /// Kafka's wire form: no allocation per record (rskafka's `Record` took eight).
    pub fn encode_into(&self, source_name: &str, records: &mut EncodedRecords) {
        let mut digits = [0u8; 20];
        let offset = decimal(self.offset, &mut digits);
        records.push(
            self.key.as_deref(),
            Some(&self.value),
            &[
                (HEADER_SOURCE, source_name.as_bytes()),
                (HEADER_SOURCE_OFFSET, offset),
            ],
        );
    }
}

/// `n` as decimal text, written into `digits`, without the formatting machinery of
/// `to_string` (once per record).
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[at..]
}

/// Turns lines of one source into records for a topic with `partitions` partitions.
#[derive(Debug, Clone)]
pub struct RecordShaper {
    key_field: Option<String>,
    partitions: i32,
}

impl RecordShaper {
    pub fn new(key_field: Option<String>, partitions: i32) -> Self {
        assert!(partitions > 0, "a topic has at least one partition");
        Self {
            key_field,
            partitions,
        }
    }

    /// Keyed records go where murmur2 says; unkeyed ones round-robin by stream offset, which
    /// spreads them evenly and keeps placement reproducible for `--resume`.
    ///
    /// The record shares `line`'s memory: a line that is compact already (as serve-api sends
    /// them) is the value as it is, and its key a slice of it; only a line with whitespace to
    /// drop, or a string key with escapes, is copied.
    pub fn shape(&self, offset: u64, line: &Bytes) -> Result<Prepared, BadRecord> {
        let field = self.key_field.as_deref();
        let (key, compact) = match scan_flat_object(line, field.map(str::as_bytes)) {
            // The common case, in one pass: nothing to compact, nothing to unescape.
            Some(scan) => (self.scanned_key(scan, line)?, true),
            None => (self.parsed_key(line)?, false),
        };
        let partition = match &key {
            Some(key) => partition_for_key(key, self.partitions),
            None => (offset % self.partitions as u64) as i32,
        };
        let value = if !compact && line.iter().any(u8::is_ascii_whitespace) {
            let mut value = Vec::with_capacity(line.len());
            compact_into(line, &mut value);
            Bytes::from(value)
        } else {
            line.clone()
        };
        Ok(Prepared {
            offset,
            partition,
            key,
            value,
        })
    }

    /// The key of a line [`scan_flat_object`] accepted.
    fn scanned_key(&self, scan: FlatScan, line: &Bytes) -> Result<Option<Bytes>, BadRecord> {
        let Some(field) = &self.key_field else {
            return Ok(None);
        };
        match scan.field {
            None => Err(BadRecord::MissingKey(field.clone())),
            Some(FieldValue::Text(text)) => Ok(Some(line.slice(text))),
            Some(FieldValue::Literal(raw)) if line[raw.start] == b'n' => Err(BadRecord::BadKey {
                field: field.clone(),
                found: "null",
            }),
            Some(FieldValue::Literal(raw)) => Ok(Some(line.slice(raw))),
        }
    }

    /// The key of any other line, by serde_json, which also says what is wrong with it.
    fn parsed_key(&self, line: &Bytes) -> Result<Option<Bytes>, BadRecord> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let found = FindKey {
            field: self.key_field.as_deref(),
        }
        .deserialize(&mut de)
        .and_then(|found| de.end().map(|()| found))
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => BadRecord::NotObject,
            _ => BadRecord::not_json(&e),
        })?;
        match &self.key_field {
            None => Ok(None),
            Some(field) => {
                let raw = found.ok_or_else(|| BadRecord::MissingKey(field.clone()))?;
                key_text(field, raw, line).map(Some)
            }
        }
    }
}

/// The key as text: strings without quotes (unescaped), numbers and booleans as written (a
/// slice of `line`, which `raw` lies in).
fn key_text(field: &str, raw: &RawValue, line: &Bytes) -> Result<Bytes, BadRecord> {
    let text = raw.get();
    let bad = |found| BadRecord::BadKey {
        field: field.to_string(),
        found,
    };
    match text.as_bytes()[0] {
        b'"' => {
            let s: String = serde_json::from_str(text).map_err(|_| bad("an invalid string"))?;
            Ok(Bytes::from(s))
        }
        b'{' => Err(bad("an object")),
        b'[' => Err(bad("an array")),
        b'n' => Err(bad("null")),
        _ => Ok(line.slice_ref(text.as_bytes())),
    }
}

/// Walks one JSON object, keeping only the raw value of `field`; everything else is skipped
/// without being built. Anything but an object is a data error.
struct FindKey<'f> {
    field: Option<&'f str>,
}

impl<'de> DeserializeSeed<'de> for FindKey<'_> {
    type Value = Option<&'de RawValue>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FindKey<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(is_key) = map.next_key_seed(KeyIs(self.field))? {
            if is_key {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Compares an object key with the wanted field without allocating.
struct KeyIs<'f>(Option<&'f str>);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(self.0 == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(field: &str) -> RecordShaper {
        RecordShaper::new(Some(field.into()), 3)
    }

    #[test]
    fn keys_are_text_and_placed_by_murmur2() {
        let p = keyed("id")
            .shape(
                5,
                &Bytes::from_static(br#"{"id": 19, "val": 1.5, "time": 1}"#),
            )
            .unwrap();
        assert_eq!(p.key.as_deref(), Some(&b"19"[..]));
        assert_eq!(p.partition, 1); // the Java client's partition for "19" of 3
        assert_eq!(p.value, &br#"{"id":19,"val":1.5,"time":1}"#[..]);
        let p = keyed("name")
            .shape(0, &Bytes::from_static(br#"{"name": "line \"3\""}"#))
            .unwrap();
        assert_eq!(p.key.as_deref(), Some(&b"line \"3\""[..]));
        let p = keyed("ok")
            .shape(0, &Bytes::from_static(br#"{"ok": true}"#))
            .unwrap();
        assert_eq!(p.key.as_deref(), Some(&b"true"[..]));
    }

    #[test]
    fn a_compact_line_is_its_value_and_a_number_key_a_slice_of_it() {
        let line = Bytes::from_static(br#"{"id":19,"val":1.5}"#);
        let p = keyed("id").shape(0, &line).unwrap();
        assert_eq!(
            p.value.as_ptr(),
            line.as_ptr(),
            "the value is the line, not a copy"
        );
        assert_eq!(p.key.as_deref(), Some(&b"19"[..]));
        assert_eq!(p.key.unwrap().as_ptr(), line[6..].as_ptr());
        assert_eq!(decimal(0, &mut [0; 20]), b"0");
        assert_eq!(decimal(907, &mut [0; 20]), b"907");
        let max = u64::MAX.to_string();
        assert_eq!(decimal(u64::MAX, &mut [0; 20]), max.as_bytes());
    }

    #[test]
    fn unkeyed_records_round_robin_by_offset() {
        let shaper = RecordShaper::new(None, 3);
        let parts: Vec<i32> = (0..6)
            .map(|o| {
                shaper
                    .shape(o, &Bytes::from_static(b"{\"a\":1}"))
                    .unwrap()
                    .partition
            })
            .collect();
        assert_eq!(parts, [0, 1, 2, 0, 1, 2]);
        assert!(
            shaper
                .shape(0, &Bytes::from_static(b"{}"))
                .unwrap()
                .key
                .is_none()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Where the one-pass scan takes a line, its key and verdict are those of the
        /// serde_json path it replaces, for every kind of key field.
        #[test]
        fn the_scan_path_keys_lines_as_the_parser_path_does(
            line in "\\{(\"(id|ts|)\":(-?[0-9]{1,3}(\\.[0-9])?|\"[a-z ]{0,4}\"|true|false|null)(,|\\}))*\\}?",
            field in proptest::option::of(proptest::sample::select(vec!["id", "ts", ""])),
        ) {
            let shaper = RecordShaper::new(field.map(String::from), 3);
            let line = Bytes::from(line);
            let field = shaper.key_field.as_deref().map(str::as_bytes);
            if let Some(scan) = scan_flat_object(&line, field) {
                proptest::prop_assert_eq!(
                    shaper.scanned_key(scan, &line),
                    shaper.parsed_key(&line),
                    "{:?}",
                    line
                );
            }
        }
    }

    #[test]
    fn bad_lines_say_why() {
        let s = keyed("id");
        assert!(matches!(
            s.shape(0, &Bytes::from_static(b"{\"id\":1")),
            Err(BadRecord::NotJson(_))
        ));
        assert!(matches!(
            s.shape(0, &Bytes::from_static(b"not json")),
            Err(BadRecord::NotJson(_))
        ));
        assert!(matches!(
            s.shape(0, &Bytes::from_static(b"{\"id\":1} x")),
            Err(BadRecord::NotJson(_))
        ));
        assert_eq!(
            s.shape(0, &Bytes::from_static(b"[1,2]")),
            Err(BadRecord::NotObject)
        );
        assert_eq!(
            s.shape(0, &Bytes::from_static(b"42")),
            Err(BadRecord::NotObject)
        );
        assert_eq!(
            s.shape(0, &Bytes::from_static(b"{\"idx\":1}")),
            Err(BadRecord::MissingKey("id".into()))
        );
        assert!(matches!(
            s.shape(0, &Bytes::from_static(b"{\"id\":null}")),
            Err(BadRecord::BadKey { found: "null", .. })
        ));
        assert!(matches!(
            s.shape(0, &Bytes::from_static(b"{\"id\":[1]}")),
            Err(BadRecord::BadKey {
                found: "an array",
                ..
            })
        ));
    }
}
