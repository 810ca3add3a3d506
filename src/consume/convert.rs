//! One JSON value, as its raw text, → a cell of its column's type: exactly, or not at all.
//!
//! Why raw text: a JSON number is a decimal. Turning it into a column's type must be one
//! correctly rounded step from that decimal, or an exact one:
//! * float64 and float32 columns parse the text with std's parsers, which are correctly
//!   rounded (Eisel–Lemire with an exact fallback). float32 parses the text directly: going
//!   through f64 first would round twice and can land one ulp off.
//! * timestamps given as (fractional) unix seconds are scaled to microseconds in decimal, so
//!   `1767225600.123457` is that many microseconds, not whatever a float multiplication makes.
//! * integers are parsed as integers.
//!
//! A value that does not fit its column is an error with a reason, never a different value:
//! a number that overflows to infinity or underflows to zero, an int32 out of range, a
//! timestamp outside years 0001–9999 (the range of Parquet readers, Spark and Python alike).
//!
//! A reason quotes the offending value through [`Excerpt`] (numbers bare while short), so a
//! 900 KB value makes a reason of a few hundred bytes, not a second copy of the payload.

use std::borrow::Cow;

use chrono::Utc;

use crate::excerpt::{Excerpt, MAX_QUOTED_BYTES};
use crate::settings::ColumnType;

/// One converted field, before it is appended to its column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

/// The earliest and latest timestamps a column accepts: 0001-01-01T00:00:00Z and
/// 9999-12-31T23:59:59.999999Z, in microseconds since 1970.
pub const MIN_MICROS: i64 = -62_135_596_800_000_000;
pub const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// Converts the raw JSON text of one value (already checked to be valid JSON by the parser)
/// to `ty`; the error says what was found and why it does not fit.
pub fn convert(raw: &str, ty: ColumnType) -> Result<Cell, String> {
    match raw.as_bytes().first() {
        Some(b'n') => Ok(Cell::Null),
        Some(b't') => boolean(true, ty),
        Some(b'f') => boolean(false, ty),
        Some(b'"') => text(raw, ty),
        Some(b'{') => Err("an object".into()),
        Some(b'[') => Err("an array".into()),
        _ => number(raw, ty),
    }
}

fn boolean(v: bool, ty: ColumnType) -> Result<Cell, String> {
    match ty {
        ColumnType::Bool => Ok(Cell::Bool(v)),
        _ => Err(format!("the bool {v}")),
    }
}

fn text(raw: &str, ty: ColumnType) -> Result<Cell, String> {
    let inner = &raw[1..raw.len() - 1];
    let value = if inner.contains('\\') {
        serde_json::from_str::<String>(raw).map_err(|e| e.to_string())?
    } else {
        inner.to_string()
    };
    match ty {
        ColumnType::String => Ok(Cell::Text(value)),
        ColumnType::Timestamp => timestamp_text(&value).map(Cell::Int),
        _ => Err(format!("the text {}", Excerpt(&value))),
    }
}

/// A time as a timestamp column reads it, to unix microseconds: unix seconds (`1767225600`,
/// `1767225600.25`) or RFC 3339 text. For flags such as `report --from`.
pub fn timestamp_micros(text: &str) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(Cell::Int(micros)) = number(text, ColumnType::Timestamp) {
        return Ok(micros);
    }
    timestamp_text(text).map_err(|_| {
        format!(
            "{} is neither unix seconds nor an RFC 3339 time like 2026-01-03T00:00:00Z (years 0001 to 9999)",
            Excerpt(text)
        )
    })
}

/// RFC 3339 (or `YYYY-MM-DD[ HH:MM:SS[.f]]`, read as UTC) to microseconds, rounding any
/// nanoseconds to the nearest microsecond (ties to even).
fn timestamp_text(value: &str) -> Result<i64, String> {
    let time = arrow::compute::kernels::cast_utils::string_to_datetime(&Utc, value)
        .map_err(|_| format!("the text {}", Excerpt(value)))?;
    let nanos =
        i128::from(time.timestamp()) * 1_000_000_000 + i128::from(time.timestamp_subsec_nanos());
    let micros = round_half_even(nanos, 1000);
    in_timestamp_range(micros).ok_or_else(|| format!("{}, {OUTSIDE_YEARS}", Excerpt(value)))
}

/// A JSON number as a reason shows it: bare while short (`1e400`), else as an [`Excerpt`]
/// (quoted, cut, with its full length).
fn number_text(raw: &str) -> Cow<'_, str> {
    if raw.len() <= MAX_QUOTED_BYTES {
        Cow::Borrowed(raw)
    } else {
        Cow::Owned(Excerpt(raw).to_string())
    }
}

const OUTSIDE_YEARS: &str = "outside the years 0001 to 9999";

fn in_timestamp_range(micros: i128) -> Option<i64> {
    (i128::from(MIN_MICROS)..=i128::from(MAX_MICROS))
        .contains(&micros)
        .then_some(micros as i64)
}

/// `n / d` rounded to the nearest integer, ties to even (`d > 0`).
fn round_half_even(n: i128, d: i128) -> i128 {
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

fn number(raw: &str, ty: ColumnType) -> Result<Cell, String> {
    let shown = || number_text(raw);
    match ty {
        // Integers parse first; only a failure looks at how the number was written.
        ColumnType::Int32 => raw
            .parse::<i32>()
            .map(|v| Cell::Int(v.into()))
            .map_err(|_| not_an_integer(raw, "int32")),
        ColumnType::Int64 => raw
            .parse::<i64>()
            .map(Cell::Int)
            .map_err(|_| not_an_integer(raw, "int64")),
        ColumnType::Float64 => {
            let v: f64 = raw.parse().map_err(|_| format!("the number {}", shown()))?;
            finite_and_nonzero(raw, v.is_infinite(), v == 0.0, "float64").map(|()| Cell::Float(v))
        }
        ColumnType::Float32 => {
            let v: f32 = raw.parse().map_err(|_| format!("the number {}", shown()))?;
            finite_and_nonzero(raw, v.is_infinite(), v == 0.0, "float32")
                .map(|()| Cell::Float(v.into()))
        }
        ColumnType::Timestamp => raw
            .parse::<i64>()
            .ok()
            .map(|seconds| i128::from(seconds) * 1_000_000) // whole seconds: the common case
            .or_else(|| decimal_seconds_to_micros(raw))
            .and_then(in_timestamp_range)
            .map(Cell::Int)
            .ok_or_else(|| format!("{}, {OUTSIDE_YEARS}", shown())),
        ColumnType::Bool | ColumnType::String => Err(format!("the number {}", shown())),
    }
}

/// Why a JSON number that did not parse as an integer does not fit an integer column.
fn not_an_integer(raw: &str, ty: &str) -> String {
    let shown = number_text(raw);
    if raw.contains('.') {
        format!("the fractional number {shown}")
    } else if raw.contains(['e', 'E']) {
        format!("the number {shown} in exponent form (write integers as digits)")
    } else {
        format!("{shown}, outside {ty}")
    }
}

/// A finite decimal that parsed to infinity overflowed the type; a nonzero one that parsed
/// to zero underflowed it. Either would store a different value.
fn finite_and_nonzero(raw: &str, infinite: bool, zero: bool, ty: &str) -> Result<(), String> {
    if infinite {
        return Err(format!("{}, too large for {ty}", number_text(raw)));
    }
    if zero && significand(raw).bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        return Err(format!(
            "{}, too small for {ty} (it would become 0)",
            number_text(raw)
        ));
    }
    Ok(())
}

/// The digits before any exponent.
fn significand(raw: &str) -> &str {
    raw.split(['e', 'E']).next().unwrap_or(raw)
}

/// Seconds given as a JSON number (`-12`, `1.5`, `1.7e9`) to microseconds, exactly in
/// decimal, rounding below a microsecond to the nearest (ties to even). `None` when it is far
/// outside any timestamp range.
fn decimal_seconds_to_micros(raw: &str) -> Option<i128> {
    /// More digits of microseconds than this is far beyond year 9999 (20 digits ≈ 3e12 years).
    const MAX_DIGITS: i64 = 20;
    let (negative, unsigned) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw),
    };
    let (mantissa, exponent) = unsigned.split_once(['e', 'E']).unwrap_or((unsigned, "0"));
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0); // zero, whatever its exponent
    }
    // value = digits × 10^scale microseconds, scale = exponent + 6 − fraction digits. An
    // exponent too large for i64 is far outside the range one way (or rounds to 0 the other).
    let scale = match exponent.parse::<i64>() {
        Ok(e) => e.saturating_add(6).saturating_sub(fraction.len() as i64),
        Err(_) if exponent.starts_with('-') => return Some(0),
        Err(_) => return None,
    };
    // Digits kept before the point; saturating, so a huge exponent cannot wrap around.
    let kept = (digits.len() as i64).saturating_add(scale);
    if kept > MAX_DIGITS {
        return None;
    }
    let magnitude = if scale >= 0 {
        digits.parse::<i128>().ok()? * 10i128.pow(scale as u32)
    } else {
        round_digits_half_even(digits, kept)
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The integer made of the first `cut` of `digits`, rounded by the rest (ties to even).
/// `cut` may be zero or negative (everything is below the point).
fn round_digits_half_even(digits: &str, cut: i64) -> i128 {
    let (kept, rest) = if cut <= 0 {
        ("", digits)
    } else {
        digits.split_at(cut as usize)
    };
    let kept_value: i128 = if kept.is_empty() {
        0
    } else {
        kept.parse().unwrap_or(0)
    };
    // The first dropped digit is the one right after the point; with cut < 0, zeros come
    // first and the rest is below one half.
    if cut < 0 {
        return kept_value;
    }
    let mut rest_digits = rest.bytes();
    let round_up = match rest_digits.next() {
        Some(d) if d > b'5' => true,
        Some(b'5') => rest_digits.any(|d| d != b'0') || kept_value % 2 == 1,
        _ => false,
    };
    kept_value + i128::from(round_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(raw: &str) -> Option<i128> {
        decimal_seconds_to_micros(raw)
    }

    #[test]
    fn seconds_scale_to_microseconds_in_decimal() {
        assert_eq!(micros("0"), Some(0));
        assert_eq!(micros("1767225600"), Some(1_767_225_600_000_000));
        assert_eq!(micros("1767225600.123457"), Some(1_767_225_600_123_457));
        assert_eq!(micros("1.000001"), Some(1_000_001));
        assert_eq!(micros("1.7672256001234567e9"), Some(1_767_225_600_123_457));
        assert_eq!(micros("-1.5"), Some(-1_500_000));
        assert_eq!(micros("15e-7"), Some(2)); // 1.5 µs, a tie: to even
        assert_eq!(micros("25e-7"), Some(2)); // 2.5 µs, a tie: to even
        assert_eq!(micros("2500001e-12"), Some(3)); // above the tie
        assert_eq!(micros("0.0000004"), Some(0));
        assert_eq!(micros("0.00000000001"), Some(0));
        assert_eq!(micros("-0.0000025"), Some(-2));
        assert_eq!(micros("0.000000"), Some(0));
        assert_eq!(micros("9e300"), None);
        assert_eq!(micros("1E+2"), Some(100_000_000));
        assert_eq!(micros("-0"), Some(0));
        // Exponents at and beyond i64's end: no overflow, no wrap-around to 1970.
        assert_eq!(micros("1e9223372036854775801"), None);
        assert_eq!(micros("1.5e9223372036854775802"), None);
        assert_eq!(micros("1e99999999999999999999"), None);
        assert_eq!(micros("1e-9223372036854775808"), Some(0));
        assert_eq!(micros("1e-99999999999999999999"), Some(0));
        assert_eq!(micros("0e99999999999999999999"), Some(0));
    }

    #[test]
    fn ties_round_to_even() {
        assert_eq!(round_half_even(15, 10), 2);
        assert_eq!(round_half_even(25, 10), 2);
        assert_eq!(round_half_even(-15, 10), -2);
        assert_eq!(round_half_even(-25, 10), -2);
        assert_eq!(round_half_even(26, 10), 3);
        assert_eq!(round_half_even(-26, 10), -3);
    }

    #[test]
    fn out_of_range_is_a_reason_not_a_value() {
        let float32 = |raw| convert(raw, ColumnType::Float32);
        assert!(
            float32("3.5e38")
                .unwrap_err()
                .contains("too large for float32")
        );
        assert!(
            float32("1e-50")
                .unwrap_err()
                .contains("too small for float32")
        );
        assert_eq!(float32("0e-50"), Ok(Cell::Float(0.0)));
        assert_eq!(float32("-0.0"), Ok(Cell::Float(-0.0)));
        assert_eq!(float32("1e-45"), Ok(Cell::Float(f32::from_bits(1).into())));
        let float64 = |raw| convert(raw, ColumnType::Float64);
        assert!(float64("1e309").unwrap_err().contains("too large"));
        assert!(float64("2e-324").unwrap_err().contains("too small"));
        assert_eq!(float64("3e-324"), Ok(Cell::Float(f64::from_bits(1))));
        let ts = |raw| convert(raw, ColumnType::Timestamp);
        assert!(ts("9214646400000").unwrap_err().contains(OUTSIDE_YEARS)); // year 294,000
        assert!(ts("253402300800").unwrap_err().contains(OUTSIDE_YEARS)); // year 10000
        assert_eq!(ts("253402300799.999999"), Ok(Cell::Int(MAX_MICROS)));
        assert_eq!(ts("-62135596800"), Ok(Cell::Int(MIN_MICROS)));
        assert!(ts("-62135596800.000001").is_err());
        assert_eq!(
            ts("\"9999-12-31T23:59:59.9999994Z\""),
            Ok(Cell::Int(MAX_MICROS))
        );
        assert!(ts("\"9999-12-31T23:59:59.9999996Z\"").is_err());
        assert_eq!(
            ts("\"1000-01-01T00:00:00Z\""),
            Ok(Cell::Int(-30_610_224_000_000_000))
        );
        let int32 = |raw| convert(raw, ColumnType::Int32);
        assert!(int32("2147483648").unwrap_err().contains("outside int32"));
        assert_eq!(int32("-2147483648"), Ok(Cell::Int(-2_147_483_648)));
        let int64 = |raw| convert(raw, ColumnType::Int64);
        assert!(
            int64("9223372036854775808")
                .unwrap_err()
                .contains("outside int64")
        );
        assert!(int64("1.0").unwrap_err().contains("fractional"));
        assert!(int64("1e3").unwrap_err().contains("exponent form"));
    }

    #[test]
    fn floats_are_correctly_rounded() {
        // serde_json's default parser gets these one ulp off.
        let float64 = |raw| match convert(raw, ColumnType::Float64) {
            Ok(Cell::Float(v)) => v.to_bits(),
            other => panic!("{other:?}"),
        };
        assert_eq!(float64("2.2250738585072011e-308"), 0x000f_ffff_ffff_ffff);
        assert_eq!(
            float64("1012.6612174390209"),
            1012.6612174390209f64.to_bits()
        );
        // 1 + 2^-24 + 2^-60 rounds up in f32 directly, but to 1.0 via f64 (twice rounded).
        let twice = "1.00000005960464477550387242"; // above the f32 midpoint 1 + 2^-24
        match convert(twice, ColumnType::Float32) {
            Ok(Cell::Float(v)) => assert_eq!(v as f32, 1.0000001f32),
            other => panic!("{other:?}"),
        }
    }
}
