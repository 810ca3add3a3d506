//! JSON values → Arrow columns, by a topic's configured schema. A record either becomes one
//! whole row or nothing (it is a bad record): fields are parsed into a scratch row first and
//! appended only when every one of them fits its column. Each value is converted from its raw
//! JSON text by [`super::convert`], which is exact or refuses.
//!
//! A bad record's reason never holds more than an [`Excerpt`] of the payload: the payload
//! itself is kept once, beside the reason, in `_bad_records/`.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use indexmap::IndexMap;
use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::convert::{Cell, convert};
use crate::excerpt::Excerpt;
use crate::settings::ColumnType;

/// Timestamps are stored in UTC, as Parquet TIMESTAMP(MICROS) adjusted to UTC.
const UTC: &str = "UTC";

/// The Arrow schema for a configured one; every column is nullable (a missing field is null).
pub fn arrow_schema(columns: &IndexMap<String, ColumnType>) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, ty)| Field::new(name, data_type(*ty), true))
        .collect();
    Arc::new(Schema::new(fields))
}

fn data_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Bool => DataType::Boolean,
        ColumnType::Int32 => DataType::Int32,
        ColumnType::Int64 => DataType::Int64,
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::String => DataType::Utf8,
        ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
    }
}

enum Column {
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Text(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl Column {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
            ColumnType::Int32 => Self::Int32(Int32Builder::new()),
            ColumnType::Int64 => Self::Int64(Int64Builder::new()),
            ColumnType::Float32 => Self::Float32(Float32Builder::new()),
            ColumnType::Float64 => Self::Float64(Float64Builder::new()),
            ColumnType::String => Self::Text(StringBuilder::new()),
            ColumnType::Timestamp => {
                Self::Timestamp(TimestampMicrosecondBuilder::new().with_timezone(UTC))
            }
        }
    }

    /// Appends a cell already checked by [`convert`].
    fn append(&mut self, cell: Cell) {
        match (self, cell) {
            (Self::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Self::Int32(b), Cell::Int(v)) => b.append_value(v as i32),
            (Self::Int64(b), Cell::Int(v)) => b.append_value(v),
            (Self::Timestamp(b), Cell::Int(v)) => b.append_value(v),
            (Self::Float32(b), Cell::Float(v)) => b.append_value(v as f32),
            (Self::Float64(b), Cell::Float(v)) => b.append_value(v),
            (Self::Text(b), Cell::Text(v)) => b.append_value(v),
            (Self::Bool(b), _) => b.append_null(),
            (Self::Int32(b), _) => b.append_null(),
            (Self::Int64(b), _) => b.append_null(),
            (Self::Timestamp(b), _) => b.append_null(),
            (Self::Float32(b), _) => b.append_null(),
            (Self::Float64(b), _) => b.append_null(),
            (Self::Text(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

/// Builds Arrow record batches from JSON payloads of one topic.
pub struct RowDecoder {
    schema: SchemaRef,
    names: Vec<String>,
    types: Vec<ColumnType>,
    columns: Vec<Column>,
    scratch: Vec<Cell>,
    rows: usize,
}

impl RowDecoder {
    pub fn new(columns: &IndexMap<String, ColumnType>) -> Self {
        Self {
            schema: arrow_schema(columns),
            names: columns.keys().cloned().collect(),
            types: columns.values().copied().collect(),
            columns: columns.values().map(|t| Column::new(*t)).collect(),
            scratch: vec![Cell::Null; columns.len()],
            rows: 0,
        }
    }

    /// Rows decoded since the last [`RowDecoder::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one row for `payload`, or returns why it is a bad record (and appends nothing).
    pub fn decode(&mut self, payload: &[u8]) -> Result<(), String> {
        // The scratch row is all null between calls: appending takes its cells out, and a bad
        // record's partial row is cleared.
        if let Err(reason) = self.parse_into_scratch(payload) {
            self.scratch.fill(Cell::Null);
            return Err(reason);
        }
        for (column, cell) in self.columns.iter_mut().zip(&mut self.scratch) {
            column.append(std::mem::replace(cell, Cell::Null));
        }
        self.rows += 1;
        Ok(())
    }

    fn parse_into_scratch(&mut self, payload: &[u8]) -> Result<(), String> {
        // JSON is UTF-8 text; checked whole, since the parser skips unused fields unchecked.
        let payload = std::str::from_utf8(payload).map_err(|e| {
            format!(
                "not UTF-8 text (invalid byte at {}), so not JSON",
                e.valid_up_to()
            )
        })?;
        let mut de = serde_json::Deserializer::from_str(payload);
        let seed = RowSeed {
            names: &self.names,
            types: &self.types,
            scratch: &mut self.scratch,
        };
        seed.deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| match e.classify() {
                serde_json::error::Category::Data => strip_position(e.to_string()),
                _ => format!("not valid JSON: {e}"),
            })
    }

    /// The rows so far as one batch; the decoder starts empty again.
    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(Column::finish).collect();
        self.rows = 0;
        RecordBatch::try_new(Arc::clone(&self.schema), arrays)
            .expect("every column has one value per row")
    }
}

/// serde_json appends " at line 1 column N"; for a one-line payload that only adds noise.
fn strip_position(message: String) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    }
}

struct RowSeed<'a> {
    names: &'a [String],
    types: &'a [ColumnType],
    scratch: &'a mut [Cell],
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        // `any`, not `map`: for a payload that is no object, serde_json's `deserialize_map`
        // quotes the whole value in its error; `any` hands it to the visitor, which does not.
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    /// serde's own message would quote the whole string; this one quotes an [`Excerpt`].
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<(), E> {
        Err(E::custom(format!(
            "invalid type: string {}, expected a JSON object",
            Excerpt(v)
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<KeyName<'de>>()? {
            let key = key.as_str();
            match self.names.iter().position(|n| n == key) {
                Some(i) => {
                    // The value's own text, borrowed: converted by `convert`, exactly.
                    let raw: &'de RawValue = map.next_value()?;
                    let ty = self.types[i];
                    self.scratch[i] = convert(raw.get(), ty).map_err(|found| {
                        A::Error::custom(format!(
                            "field `{}` should be {}, found {found}",
                            self.names[i],
                            type_name(ty)
                        ))
                    })?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the payload unless it has escapes.
enum KeyName<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl KeyName<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(s) => s,
        }
    }
}

impl<'de> serde::Deserialize<'de> for KeyName<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyName::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyName::Owned(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

fn type_name(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Bool => "a bool",
        ColumnType::Int32 => "an int32",
        ColumnType::Int64 => "an int64",
        ColumnType::Float32 => "a float32",
        ColumnType::Float64 => "a float64",
        ColumnType::String => "a string",
        ColumnType::Timestamp => "a timestamp (unix seconds or RFC 3339 text)",
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int32Type, TimestampMicrosecondType};

    use super::*;

    fn metrics() -> RowDecoder {
        let cols: IndexMap<String, ColumnType> = [
            ("id".to_string(), ColumnType::Int32),
            ("val".to_string(), ColumnType::Float64),
            ("time".to_string(), ColumnType::Timestamp),
        ]
        .into_iter()
        .collect();
        RowDecoder::new(&cols)
    }

    #[test]
    fn decodes_rows_in_schema_order_with_nulls_for_missing_fields() {
        let mut d = metrics();
        d.decode(br#"{"time": 1767225600, "val": 1.25, "id": 3, "extra": [1]}"#)
            .unwrap();
        d.decode(br#"{"id": 4}"#).unwrap();
        d.decode(br#"{"id": 5, "val": 2, "time": "2026-01-01T00:00:01.5Z"}"#)
            .unwrap();
        d.decode(br#"{"id": null, "time": 1.000001}"#).unwrap();
        let batch = d.finish();
        assert_eq!(batch.num_rows(), 4);
        let id = batch.column(0).as_primitive::<Int32Type>();
        let val = batch.column(1).as_primitive::<Float64Type>();
        let time = batch.column(2).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(id.value(0), 3);
        assert!(id.is_null(3));
        assert_eq!(val.value(0), 1.25);
        assert!(val.is_null(1));
        assert_eq!(val.value(2), 2.0);
        assert_eq!(time.value(0), 1_767_225_600_000_000);
        assert_eq!(time.value(2), 1_767_225_601_500_000);
        assert_eq!(time.value(3), 1_000_001);
        assert_eq!(d.rows(), 0);
    }

    #[test]
    fn a_bad_record_adds_nothing() {
        let mut d = metrics();
        for (payload, why) in [
            (
                &br#"{"id": "x", "val": 1.0}"#[..],
                "field `id` should be an int32",
            ),
            (
                br#"{"id": 1, "val": "high"}"#,
                "field `val` should be a float64",
            ),
            (
                br#"{"id": 1.5}"#,
                "field `id` should be an int32, found the fractional number 1.5",
            ),
            (br#"{"id": 3000000000}"#, "outside int32"),
            (
                br#"{"time": "yesterday"}"#,
                "field `time` should be a timestamp",
            ),
            (br#"[1, 2]"#, "expected a JSON object"),
            (br#"{"id": 1"#, "not valid JSON"),
            (br#"{"id": 1} {}"#, "not valid JSON"),
        ] {
            let err = d.decode(payload).unwrap_err();
            assert!(err.contains(why), "{err:?} should contain {why:?}");
        }
        d.decode(br#"{"id": 1}"#).unwrap();
        assert_eq!(d.finish().num_rows(), 1, "bad records left no partial rows");
    }

    #[test]
    fn reasons_quote_an_excerpt_of_a_huge_value() {
        let big = 900_000;
        let cols: IndexMap<String, ColumnType> = [
            ("i32", ColumnType::Int32),
            ("i64", ColumnType::Int64),
            ("f32", ColumnType::Float32),
            ("f64", ColumnType::Float64),
            ("ts", ColumnType::Timestamp),
            ("b", ColumnType::Bool),
            ("s", ColumnType::String),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        let mut d = RowDecoder::new(&cols);
        let text = format!("\"{}\"", "x".repeat(big));
        let escaped = format!("\"\\n{}\"", "y".repeat(big));
        let digits = format!("1{}", "2".repeat(big));
        let fraction = format!("1.{}", "5".repeat(big));
        let exponent = format!("1{}e5", "0".repeat(big));
        let tiny = format!("0.{}1", "0".repeat(big));
        for (column, value) in [
            ("i32", &text),
            ("i32", &escaped),
            ("i32", &digits),
            ("i64", &fraction),
            ("i64", &exponent),
            ("f32", &digits),
            ("f64", &tiny),
            ("f64", &text),
            ("ts", &text),
            ("ts", &digits),
            ("b", &digits),
            ("s", &digits),
        ] {
            let payload = format!("{{\"{column}\": {value}}}");
            let reason = d.decode(payload.as_bytes()).unwrap_err();
            assert!(
                reason.len() < 400 && reason.contains(&format!("field `{column}`")),
                "{column} = {:.40}...: {} bytes: {reason:.500}",
                value,
                reason.len()
            );
        }
        for payload in [
            text.clone(),
            format!("{text} trailing"),
            format!("[{text}]"),
        ] {
            let reason = d.decode(payload.as_bytes()).unwrap_err();
            assert!(reason.len() < 400, "{} bytes: {reason:.500}", reason.len());
        }
    }
}
