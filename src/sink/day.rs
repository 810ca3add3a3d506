//! Partitioning rows by the UTC day of a timestamp column (`partition_by_day`), for every sink
//! that writes files: the Parquet sink puts each day's rows under `date=YYYY-MM-DD/` (Hive's
//! layout), the Delta sink hands delta-rs a `date` column to partition by.
//!
//! The day is the calendar date in UTC of the timestamp's microseconds since 1970
//! ([`utc_day`]), proleptic Gregorian, whatever offset the record's text had:
//! `2021-06-22T23:30:00-02:00` is 2021-06-23. A row without a time has no day; Hive, Spark,
//! pyarrow and DuckDB spell that partition [`HIVE_DEFAULT_PARTITION`] and read it as null.
//!
//! Everything here works on whole Arrow columns (the `take` kernel, one pass over the
//! timestamps), not cell by cell.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, StringBuilder, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::SinkError;

/// The partition column's name: `date=2021-06-22/` in a path, `date` in a Delta table.
pub const DATE_COLUMN: &str = "date";

/// The directory value of rows without a time (`date=__HIVE_DEFAULT_PARTITION__`), which Hive,
/// Spark, pyarrow and DuckDB read back as a null `date`.
pub const HIVE_DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The UTC calendar day of `micros` since 1970-01-01T00:00:00Z as `YYYY-MM-DD`.
///
/// Correct for every `i64`, before 1970 too (a negative value's day is the one it falls in,
/// not the one it rounds towards). Years outside 0000–9999 are written as ISO 8601's
/// expanded form with a sign (`+10000-01-01`, `-0001-12-31`), as chrono does.
#[allow(
    dead_code,
    reason = "for the Delta sink and messages; the Parquet sink splits by day"
)]
pub fn utc_day(micros: i64) -> String {
    format_day(day_number(micros))
}

/// Days since 1970-01-01 of the day `micros` falls in (rounded down, also below zero).
fn day_number(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_DAY)
}

/// `YYYY-MM-DD` of `days` since 1970-01-01.
fn format_day(days: i64) -> String {
    let Civil { year, month, day } = civil_from_days(days);
    if (0..=9999).contains(&year) {
        format!("{year:04}-{month:02}-{day:02}")
    } else {
        format!("{year:+05}-{month:02}-{day:02}")
    }
}

/// A proleptic Gregorian calendar date.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
}

/// The date `days` after 1970-01-01: Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>), on eras of
/// 400 years (146,097 days) counted from 0000-03-01, so leap days fall at the end of a year.
fn civil_from_days(days: i64) -> Civil {
    let z = days + 719_468; // days since 0000-03-01; |days| < 2^37, so no overflow
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0 = March .. 11 = February
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    Civil { year, month, day }
}

/// The rows of one day.
#[derive(Debug, Clone)]
pub struct DayRows {
    /// `YYYY-MM-DD` (UTC); `None` for rows whose time is null.
    pub date: Option<String>,
    /// The rows, every column of the input, in their input order.
    pub rows: RecordBatch,
}

impl DayRows {
    /// The Hive directory of this day: `date=2021-06-22`, or
    /// `date=__HIVE_DEFAULT_PARTITION__` for rows without a time.
    pub fn dir_name(&self) -> String {
        let value = self.date.as_deref().unwrap_or(HIVE_DEFAULT_PARTITION);
        format!("{DATE_COLUMN}={value}")
    }
}

/// Splits `rows` by the UTC day of their timestamp `column`: one [`DayRows`] per day present,
/// days ascending, rows without a time last; within a day the rows keep their order. No
/// column is added (a file sink keeps the date in the path). An empty batch gives no days;
/// a batch of one day is returned as it is, without copying.
pub fn split_by_day(rows: &RecordBatch, column: &str) -> Result<Vec<DayRows>, SinkError> {
    let times = timestamp_column(rows, column)?;
    let mut days: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
    let mut undated: Vec<u32> = Vec::new();
    for (i, time) in times.iter().enumerate() {
        let index = u32::try_from(i).map_err(|_| SinkError::TooManyRows {
            rows: rows.num_rows(),
        })?;
        match time {
            Some(micros) => days.entry(day_number(micros)).or_default().push(index),
            None => undated.push(index),
        }
    }
    let groups: Vec<(Option<i64>, Vec<u32>)> = days
        .into_iter()
        .map(|(day, indices)| (Some(day), indices))
        .chain((!undated.is_empty()).then_some((None, undated)))
        .collect();
    if let [(day, _)] = groups.as_slice() {
        return Ok(vec![DayRows {
            date: day.map(format_day),
            rows: rows.clone(),
        }]);
    }
    groups
        .into_iter()
        .map(|(day, indices)| {
            let picked =
                take_record_batch(rows, &UInt32Array::from(indices)).map_err(|source| {
                    SinkError::Arrow {
                        what: "splitting rows by day",
                        source,
                    }
                })?;
            Ok(DayRows {
                date: day.map(format_day),
                rows: picked,
            })
        })
        .collect()
}

/// `rows` with a nullable Utf8 column [`DATE_COLUMN`] appended: the UTC day of each row's
/// timestamp `column` (`YYYY-MM-DD`), null where the time is null. For a table format that
/// partitions by a column of its own (Delta).
pub fn with_date_column(rows: &RecordBatch, column: &str) -> Result<RecordBatch, SinkError> {
    if rows.schema().column_with_name(DATE_COLUMN).is_some() {
        return Err(SinkError::DateColumnTaken {
            column: DATE_COLUMN,
        });
    }
    let times = timestamp_column(rows, column)?;
    let mut dates = StringBuilder::with_capacity(times.len(), times.len() * "YYYY-MM-DD".len());
    let mut last: Option<(i64, String)> = None;
    for time in times.iter() {
        let Some(micros) = time else {
            dates.append_null();
            continue;
        };
        let day = day_number(micros);
        match &last {
            Some((d, text)) if *d == day => dates.append_value(text),
            _ => {
                let text = format_day(day);
                dates.append_value(&text);
                last = Some((day, text));
            }
        }
    }
    let schema = rows.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(DATE_COLUMN, DataType::Utf8, true)));
    let mut columns = rows.columns().to_vec();
    columns.push(Arc::new(dates.finish()));
    let schema = Schema::new_with_metadata(fields, schema.metadata().clone());
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|source| SinkError::Arrow {
        what: "adding the date column",
        source,
    })
}

/// The timestamp column `column` of `rows` (microseconds since 1970, UTC).
fn timestamp_column<'a>(
    rows: &'a RecordBatch,
    column: &str,
) -> Result<&'a TimestampMicrosecondArray, SinkError> {
    let no_column = |found: String| SinkError::NoDayColumn {
        column: column.to_string(),
        found,
    };
    let Some(array) = rows.column_by_name(column) else {
        let names: Vec<&str> = rows
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        return Err(no_column(format!(
            "the rows have only {}",
            names.join(", ")
        )));
    };
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => array
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| no_column(format!("it is {}", array.data_type()))),
        other => Err(no_column(format!("it is {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use chrono::{DateTime, Datelike};
    use proptest::prelude::*;

    /// chrono's answer, an implementation independent of ours.
    fn chrono_day(micros: i64) -> Option<String> {
        let date = DateTime::from_timestamp_micros(micros)?.date_naive();
        Some(date.to_string())
    }

    #[test]
    fn days_around_midnight_leap_days_and_year_boundaries() {
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_micros()
        };
        let cases = [
            ("1970-01-01T00:00:00Z", "1970-01-01"),
            ("1969-12-31T23:59:59.999999Z", "1969-12-31"),
            ("2021-06-22T23:59:59.999999Z", "2021-06-22"),
            ("2021-06-23T00:00:00Z", "2021-06-23"),
            ("2021-06-22T23:30:00-02:00", "2021-06-23"),
            ("2021-06-23T01:30:00+05:30", "2021-06-22"),
            ("2020-02-29T12:00:00Z", "2020-02-29"),
            ("2000-02-29T23:59:59Z", "2000-02-29"),
            ("1900-03-01T00:00:00Z", "1900-03-01"),
            ("1900-02-28T23:59:59Z", "1900-02-28"),
            ("2021-12-31T23:59:59.999999Z", "2021-12-31"),
            ("2022-01-01T00:00:00Z", "2022-01-01"),
            ("0001-01-01T00:00:00Z", "0001-01-01"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31"),
        ];
        for (text, day) in cases {
            assert_eq!(utc_day(at(text)), day, "{text}");
        }
        assert_eq!(utc_day(-1), "1969-12-31");
        assert_eq!(utc_day(-MICROS_PER_DAY), "1969-12-31");
        assert_eq!(utc_day(-MICROS_PER_DAY - 1), "1969-12-30");
        // The extremes do not overflow; chrono stops short of them, so compare the shape.
        assert_eq!(utc_day(i64::MAX), "+294247-01-10");
        assert_eq!(utc_day(i64::MIN), "-290308-12-21");
    }

    proptest! {
        #[test]
        fn utc_day_agrees_with_chrono(micros in any::<i64>()) {
            if let Some(expected) = chrono_day(micros) {
                prop_assert_eq!(utc_day(micros), expected);
            }
        }

        #[test]
        fn utc_day_agrees_with_chrono_near_midnight(
            day in -800_000i64..3_000_000,
            offset in -2_000_000i64..2_000_000,
        ) {
            let micros = day * MICROS_PER_DAY + offset;
            prop_assert_eq!(Some(utc_day(micros)), chrono_day(micros));
        }
    }

    #[test]
    fn chrono_covers_the_years_the_consumer_accepts() {
        for year in [1, 1582, 1970, 9999] {
            let micros = chrono::NaiveDate::from_ymd_opt(year, 7, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros();
            let day = utc_day(micros);
            assert_eq!(day, format!("{year:04}-07-01"));
            assert_eq!(chrono_day(micros).unwrap(), day);
            assert_eq!(
                DateTime::from_timestamp_micros(micros).unwrap().year(),
                year
            );
        }
    }

    fn batch(ids: &[i32], times: &[Option<i64>]) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(ids.to_vec())),
                Arc::new(TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC")),
            ],
        )
        .unwrap()
    }

    fn ids(rows: &RecordBatch) -> Vec<i32> {
        rows.column(0)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap()
            .values()
            .to_vec()
    }

    #[test]
    fn splits_by_day_in_day_order_keeping_row_order_and_nulls_last() {
        let d = MICROS_PER_DAY;
        let rows = batch(
            &[0, 1, 2, 3, 4, 5, 6],
            &[
                Some(2 * d),
                None,
                Some(-1),
                Some(2 * d + 5),
                Some(0),
                None,
                Some(-d),
            ],
        );
        let days = split_by_day(&rows, "time").unwrap();
        let got: Vec<(Option<&str>, Vec<i32>, String)> = days
            .iter()
            .map(|g| (g.date.as_deref(), ids(&g.rows), g.dir_name()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    Some("1969-12-31"),
                    vec![2, 6],
                    "date=1969-12-31".to_string()
                ),
                (Some("1970-01-01"), vec![4], "date=1970-01-01".into()),
                (Some("1970-01-03"), vec![0, 3], "date=1970-01-03".into()),
                (None, vec![1, 5], "date=__HIVE_DEFAULT_PARTITION__".into()),
            ]
        );
        for g in &days {
            assert_eq!(g.rows.schema(), rows.schema(), "no column added or lost");
        }
    }

    #[test]
    fn one_day_and_no_rows() {
        let rows = batch(&[7, 8], &[Some(10), Some(20)]);
        let days = split_by_day(&rows, "time").unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].date.as_deref(), Some("1970-01-01"));
        assert_eq!(ids(&days[0].rows), [7, 8]);
        assert!(split_by_day(&batch(&[], &[]), "time").unwrap().is_empty());
    }

    #[test]
    fn a_missing_or_wrong_column_is_an_error_naming_it() {
        let rows = batch(&[1], &[Some(1)]);
        let err = split_by_day(&rows, "when").unwrap_err().to_string();
        assert!(err.contains("when") && err.contains("id, time"), "{err}");
        let err = split_by_day(&rows, "id").unwrap_err().to_string();
        assert!(err.contains("`id`") && err.contains("Int32"), "{err}");
    }

    #[test]
    fn adds_a_date_column_with_nulls_for_missing_times() {
        let d = MICROS_PER_DAY;
        let rows = batch(&[0, 1, 2, 3], &[Some(d), None, Some(d + 1), Some(-1)]);
        let dated = with_date_column(&rows, "time").unwrap();
        assert_eq!(dated.num_columns(), 3);
        let field = dated.schema().field(2).clone();
        assert_eq!(
            (
                field.name().as_str(),
                field.data_type(),
                field.is_nullable()
            ),
            (DATE_COLUMN, &DataType::Utf8, true)
        );
        let dates = dated
            .column(2)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let dates: Vec<Option<&str>> = dates.iter().collect();
        assert_eq!(
            dates,
            [
                Some("1970-01-02"),
                None,
                Some("1970-01-02"),
                Some("1969-12-31")
            ]
        );
        let again = with_date_column(&dated, "time").unwrap_err().to_string();
        assert!(again.contains("`date`"), "{again}");
    }
}
