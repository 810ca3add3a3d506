//! Turning the columns the report reads into plain values, whatever integer, float, text or
//! timestamp type the topic's schema gave them; a type that cannot mean what the column
//! should is refused, naming the column.

use arrow::array::{Array, ArrayRef, AsArray as _, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};

use super::ReportError;
use super::model::Key;

/// Where a topic's three columns are: a key (product or metric id), a number (cumulative
/// output or metric value) and a time.
pub struct Names<'a> {
    pub topic: &'a str,
    pub key: &'a str,
    pub value: &'a str,
    pub time: &'a str,
}

impl Names<'_> {
    /// The columns to read, in the order [`Self::decode`] takes them.
    pub fn columns(&self) -> [&str; 3] {
        [self.key, self.value, self.time]
    }

    /// The batch's columns as typed values; a type that does not fit names the topic.
    pub fn decode(&self, batch: &arrow::array::RecordBatch) -> Result<Rows, ReportError> {
        let type_error = |source| ReportError::ColumnType {
            topic: self.topic.to_string(),
            source,
        };
        Ok(Rows {
            keys: KeyColumn::new(self.key, batch.column(0)).map_err(type_error)?,
            values: numbers(self.value, batch.column(1)).map_err(type_error)?,
            times: micros(self.time, batch.column(2)).map_err(type_error)?,
        })
    }
}

/// One row the report can use.
pub struct Row {
    pub key: Key,
    pub value: f64,
    /// Unix microseconds.
    pub time: i64,
}

/// A decoded batch.
pub struct Rows {
    keys: KeyColumn,
    values: Float64Array,
    times: Int64Array,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Row `i`, or `None` when a field is null or the value is not finite (NaN, ±inf): such
    /// rows are left out and counted by the caller.
    pub fn get(&self, i: usize) -> Option<Row> {
        let key = self.keys.get(i)?;
        if !(self.values.is_valid(i) && self.times.is_valid(i)) {
            return None;
        }
        let value = self.values.value(i);
        value.is_finite().then(|| Row {
            key,
            value,
            time: self.times.value(i),
        })
    }
}

/// Why a column cannot be read as what the report needs.
#[derive(Debug, thiserror::Error)]
#[error("column {column} is {found}, but the report needs {wanted}")]
pub struct ColumnTypeError {
    pub column: String,
    pub found: DataType,
    pub wanted: &'static str,
}

fn wrong(column: &str, array: &ArrayRef, wanted: &'static str) -> ColumnTypeError {
    ColumnTypeError {
        column: column.to_string(),
        found: array.data_type().clone(),
        wanted,
    }
}

/// A product or metric id column.
pub enum KeyColumn {
    Int(Int64Array),
    Text(StringArray),
}

impl KeyColumn {
    pub fn new(column: &str, array: &ArrayRef) -> Result<Self, ColumnTypeError> {
        let wanted = "an integer or a string (a product or metric id)";
        let as_type = match array.data_type() {
            t if t.is_integer() => DataType::Int64,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
            _ => return Err(wrong(column, array, wanted)),
        };
        let converted = cast(array, &as_type).map_err(|_| wrong(column, array, wanted))?;
        Ok(match as_type {
            DataType::Int64 => KeyColumn::Int(converted.as_primitive::<Int64Type>().clone()),
            _ => KeyColumn::Text(converted.as_string::<i32>().clone()),
        })
    }

    /// The key of row `i`; `None` when null.
    pub fn get(&self, i: usize) -> Option<Key> {
        match self {
            KeyColumn::Int(a) => a.is_valid(i).then(|| Key::Int(a.value(i))),
            KeyColumn::Text(a) => a.is_valid(i).then(|| Key::Text(a.value(i).to_string())),
        }
    }
}

/// A numeric column as `f64` (nulls stay null).
pub fn numbers(column: &str, array: &ArrayRef) -> Result<Float64Array, ColumnTypeError> {
    let wanted = "a number (float or integer)";
    if !(array.data_type().is_floating() || array.data_type().is_integer()) {
        return Err(wrong(column, array, wanted));
    }
    let converted = cast(array, &DataType::Float64).map_err(|_| wrong(column, array, wanted))?;
    Ok(converted.as_primitive::<Float64Type>().clone())
}

/// A time column as unix microseconds: a timestamp of any unit, or integer unix seconds.
/// Seconds past what microseconds can hold become null.
pub fn micros(column: &str, array: &ArrayRef) -> Result<Int64Array, ColumnTypeError> {
    let wanted = "a timestamp or integer unix seconds";
    match array.data_type() {
        // The time zone is kept: the stored values are UTC instants either way, and a cast
        // to a naive timestamp would shift them to the zone's wall clock.
        DataType::Timestamp(_, zone) => {
            let converted = cast(
                array,
                &DataType::Timestamp(TimeUnit::Microsecond, zone.clone()),
            )
            .map_err(|_| wrong(column, array, wanted))?;
            let values = converted.as_primitive::<TimestampMicrosecondType>();
            Ok(values.unary_opt::<_, Int64Type>(Some))
        }
        t if t.is_integer() => {
            let seconds =
                cast(array, &DataType::Int64).map_err(|_| wrong(column, array, wanted))?;
            Ok(seconds
                .as_primitive::<Int64Type>()
                .unary_opt::<_, Int64Type>(|s| s.checked_mul(1_000_000)))
        }
        _ => Err(wrong(column, array, wanted)),
    }
}
