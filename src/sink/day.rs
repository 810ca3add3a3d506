//! Partitioning by day (temporary minimal version; replaced by the full module).

use std::sync::Arc;

use arrow::array::{Array, StringBuilder, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::SinkError;

pub const DATE_COLUMN: &str = "date";

/// `YYYY-MM-DD` (UTC) of a timestamp in microseconds.
pub fn utc_day(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `rows` with a `date` column appended: the UTC day of `column`.
pub fn with_date_column(rows: &RecordBatch, column: &str) -> Result<RecordBatch, SinkError> {
    let bad = |reason: String| SinkError::Encode {
        path: column.to_string(),
        reason,
    };
    let times = rows
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .ok_or_else(|| bad(format!("no timestamp column {column}")))?;
    let mut dates = StringBuilder::new();
    for i in 0..times.len() {
        if times.is_null(i) {
            dates.append_null();
        } else {
            dates.append_value(utc_day(times.value(i)));
        }
    }
    let mut fields: Vec<Field> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(DATE_COLUMN, DataType::Utf8, true));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(dates.finish()));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| bad(e.to_string()))
}
