//! Value types that are valid once loaded. Each one parses and checks its own text or number
//! while the settings deserialize (`#[serde(try_from = ...)]`), so a bad value is refused at
//! start naming its key and origin, and no code later re-parses a setting or `expect`s it to be
//! valid. Each serializes back to the form a config file uses, for `config show`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::excerpt::Excerpt;

/// The longest span any duration setting may be: a year is "forever" for every timeout and
/// deadline here, and stays far from where `Duration` and `Instant` arithmetic overflow (a
/// `retry_deadline` of `1e30` used to panic when the producer started).
pub const MAX_SECONDS: u32 = 365 * 24 * 3600;

/// A span written as a number of seconds (`0.5`, `10`), from 0 up to `MAX` seconds.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Seconds<const MAX: u32 = MAX_SECONDS>(f64);

/// Like [`Seconds`], but at least a millisecond: for timeouts, deadlines and intervals, where 0 would mean
/// "fail at once" or "spin".
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct PositiveSeconds<const MAX: u32 = MAX_SECONDS>(f64);

impl<const MAX: u32> Seconds<MAX> {
    /// For defaults written in code; panics on a value the type refuses.
    pub const fn from_secs(secs: f64) -> Self {
        assert!(secs >= 0.0 && secs <= MAX as f64);
        Self(secs)
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0
    }
}

/// The shortest [`PositiveSeconds`]: one millisecond.
pub const MIN_POSITIVE_SECONDS: f64 = 0.001;

impl<const MAX: u32> PositiveSeconds<MAX> {
    /// For defaults written in code; panics on a value the type refuses.
    pub const fn from_secs(secs: f64) -> Self {
        assert!(secs >= MIN_POSITIVE_SECONDS && secs <= MAX as f64);
        Self(secs)
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0)
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0
    }
}

impl<const MAX: u32> TryFrom<f64> for Seconds<MAX> {
    type Error = String;

    fn try_from(secs: f64) -> Result<Self, String> {
        if secs.is_finite() && (0.0..=f64::from(MAX)).contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(format!(
                "expected a number of seconds, not negative and at most {MAX}; found {secs}"
            ))
        }
    }
}

impl<const MAX: u32> TryFrom<f64> for PositiveSeconds<MAX> {
    type Error = String;

    /// At least a millisecond: a shorter timeout or interval is 0 to the timers that use it
    /// (tokio's `interval` panics on 0; a zero backoff retries in a busy loop).
    fn try_from(secs: f64) -> Result<Self, String> {
        if secs.is_finite() && secs >= MIN_POSITIVE_SECONDS && secs <= f64::from(MAX) {
            Ok(Self(secs))
        } else {
            Err(format!(
                "expected a number of seconds, at least {MIN_POSITIVE_SECONDS} and at most {MAX}; found {secs}"
            ))
        }
    }
}

impl<const MAX: u32> From<Seconds<MAX>> for f64 {
    fn from(secs: Seconds<MAX>) -> f64 {
        secs.0
    }
}

impl<const MAX: u32> From<PositiveSeconds<MAX>> for f64 {
    fn from(secs: PositiveSeconds<MAX>) -> f64 {
        secs.0
    }
}

/// When micro-batches start: `10s`, `500ms`, `2m`, `1h`, `0s` (continuous: the next batch as
/// soon as the last one committed) or `available-now` (process what is there at start, then
/// exit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Trigger {
    /// A batch per period (above 0).
    Every(Duration),
    /// `0s`: batch after batch with no wait between them while records wait; with nothing to
    /// read, the consumer looks again after a short pause (it never spins).
    Continuous,
    AvailableNow,
}

impl Trigger {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "available-now" {
            return Some(Self::AvailableNow);
        }
        let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = number.trim().parse().ok()?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        if secs > f64::from(MAX_SECONDS) {
            return None;
        }
        if secs == 0.0 {
            return Some(Self::Continuous);
        }
        // Refuses negative and non-finite numbers; a period above 0 that rounds to 0 is
        // refused rather than taken for `0s`: whoever wrote it meant a period.
        let period = Duration::try_from_secs_f64(secs).ok()?;
        (!period.is_zero()).then_some(Self::Every(period))
    }
}

impl TryFrom<String> for Trigger {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| {
            format!(
                "{} is not an interval like 10s, 500ms, 2m (at most a year), 0s (continuous) \
                 or available-now",
                Excerpt(&text)
            )
        })
    }
}

/// The shortest text that reads back as the same trigger: `10s`, `500ms`, `2m`, `1h`, `0s`.
impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = match self {
            Self::AvailableNow => return f.write_str("available-now"),
            Self::Continuous => return f.write_str("0s"),
            Self::Every(period) => *period,
        };
        let secs = period.as_secs();
        let whole_secs = period.subsec_nanos() == 0;
        if whole_secs && secs % 3600 == 0 {
            write!(f, "{}h", secs / 3600)
        } else if whole_secs && secs % 60 == 0 {
            write!(f, "{}m", secs / 60)
        } else if whole_secs {
            write!(f, "{secs}s")
        } else if period.subsec_nanos() % 1_000_000 == 0 {
            write!(f, "{}ms", period.as_millis())
        } else {
            write!(f, "{}s", period.as_secs_f64())
        }
    }
}

impl From<Trigger> for String {
    fn from(trigger: Trigger) -> String {
        trigger.to_string()
    }
}

/// A span of time as text: `7d`, `12h`, `30m`, `10s`, `500ms`, or `0s`; at most a year.
fn parse_span(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = number.trim().parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        _ => return None,
    };
    if secs > f64::from(MAX_SECONDS) {
        return None;
    }
    // Refuses negative and non-finite numbers.
    Duration::try_from_secs_f64(secs).ok()
}

/// The shortest text [`parse_span`] reads back as `span`: `7d`, `12h`, `30m`, `10s`, `500ms`.
fn format_span(span: Duration) -> String {
    let secs = span.as_secs();
    if span.subsec_nanos() != 0 {
        return if span.subsec_nanos().is_multiple_of(1_000_000) {
            format!("{}ms", span.as_millis())
        } else {
            format!("{}s", span.as_secs_f64())
        };
    }
    match secs {
        0 => "0s".to_string(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// A span of time that may be 0 (a retention): `7d`, `12h`, `30m`, `10s`, `0s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span(pub Duration);

impl TryFrom<String> for Span {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        parse_span(&text).map(Self).ok_or_else(|| {
            format!(
                "{} is not a span like 7d, 12h, 30m, 10s or 0s (at most a year)",
                Excerpt(&text)
            )
        })
    }
}

impl From<Span> for String {
    fn from(span: Span) -> String {
        format_span(span.0)
    }
}

/// An interval for something done repeatedly, or `off`: `1h`, `30m` (above 0), `off` or empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OptionalInterval(pub Option<Duration>);

impl TryFrom<String> for OptionalInterval {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("off") {
            return Ok(Self(None));
        }
        match parse_span(trimmed) {
            Some(every) if every >= Duration::from_millis(1) => Ok(Self(Some(every))),
            _ => Err(format!(
                "{} is not an interval like 1h, 30m, 10s (above 0, at most a year) or off",
                Excerpt(&text)
            )),
        }
    }
}

impl From<OptionalInterval> for String {
    fn from(interval: OptionalInterval) -> String {
        interval.0.map_or_else(|| "off".to_string(), format_span)
    }
}

/// A number of bytes: `128MB`, `64MiB`, `1GB`, `512kB`, or plain bytes (`1048576`). The
/// decimal units (kB, MB, GB) and binary ones (KiB, MiB, GiB) both count in 1024s, as
/// file-size settings of other tools (Spark, delta-rs) do; at least 1 byte, at most 1 TiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize(pub u64);

/// The largest [`ByteSize`]: a TiB, far above any sensible file size.
pub const MAX_BYTE_SIZE: u64 = 1 << 40;

impl ByteSize {
    fn parse(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let n: f64 = number.trim().parse().ok()?;
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return None,
        };
        let bytes = n * scale as f64;
        (bytes.is_finite() && bytes >= 1.0 && bytes <= MAX_BYTE_SIZE as f64)
            .then_some(bytes.round() as u64)
    }
}

impl TryFrom<String> for ByteSize {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).map(Self).ok_or_else(|| {
            format!(
                "{} is not a size like 128MB, 64MiB, 1GB or a number of bytes (at least 1, at most 1TiB)",
                Excerpt(&text)
            )
        })
    }
}

/// The shortest exact form: `128MiB`, `1GiB`, `1500` (bytes).
impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl From<ByteSize> for String {
    fn from(size: ByteSize) -> String {
        size.to_string()
    }
}

/// An address to listen on, or none: written `HOST:PORT` with an IP address, or empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl TryFrom<String> for OptionalAddr {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(Self(None));
        }
        trimmed.parse().map(|addr| Self(Some(addr))).map_err(|_| {
            format!(
                "{} is not HOST:PORT with an IP address, like 127.0.0.1:8080 (or empty for none)",
                Excerpt(&text)
            )
        })
    }
}

impl From<OptionalAddr> for String {
    fn from(addr: OptionalAddr) -> String {
        addr.0.map(|a| a.to_string()).unwrap_or_default()
    }
}

/// An enum whose values are written as names (`"lz4"`): parsing refuses any other text
/// listing the valid names, and `Display` writes the name back.
macro_rules! named_choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, as written in a config file.
            pub const NAMES: &[&str] = &[$($text),+];
        }

        impl TryFrom<String> for $name {
            type Error = String;

            /// Case does not matter: `SASL_SSL` (as Kafka's `client.properties` writes it) is
            /// `sasl_ssl`.
            fn try_from(text: String) -> Result<Self, String> {
                let trimmed = text.trim();
                $( if trimmed.eq_ignore_ascii_case($text) {
                    return Ok(Self::$variant);
                } )+
                Err(format!(
                    "{} is not one of {}",
                    Excerpt(&text),
                    Self::NAMES.join(", ")
                ))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $( Self::$variant => $text, )+
                })
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.to_string()
            }
        }
    };
}

named_choice! {
    /// What to do with a record that cannot be used.
    pub enum BadRecordPolicy {
        /// Count it, log it (or store it in `_bad_records/`) and go on.
        Skip = "skip",
        /// Stop at the first one.
        Fail = "fail",
    }
}

named_choice! {
    /// Where the consumer's micro-batches go.
    pub enum SinkKind {
        /// Parquet files in directories, with the consumer's own checkpoint (local disk).
        Parquet = "parquet",
        /// Rows printed to stdout; nothing kept.
        Console = "console",
        /// Delta Lake tables (local disk or S3); the Delta log is the checkpoint.
        Delta = "delta",
    }
}

named_choice! {
    /// The producer's codec for record batches.
    pub enum CompressionCodec {
        None = "none",
        Gzip = "gzip",
        Lz4 = "lz4",
        Snappy = "snappy",
        Zstd = "zstd",
    }
}

named_choice! {
    /// The column types a consumer schema may use.
    pub enum ColumnType {
        Bool = "bool",
        Int32 = "int32",
        Int64 = "int64",
        Float32 = "float32",
        Float64 = "float64",
        String = "string",
        /// Unix seconds (integer or fractional) or RFC 3339 text; stored as microseconds, UTC.
        Timestamp = "timestamp",
    }
}

named_choice! {
    /// How the connection to each broker is secured, by Kafka's own names.
    pub enum SecurityProtocol {
        Plaintext = "plaintext",
        /// TLS; with a client certificate too if one is configured (mutual TLS).
        Ssl = "ssl",
        /// A SASL login over an unencrypted connection.
        SaslPlaintext = "sasl_plaintext",
        /// A SASL login over TLS.
        SaslSsl = "sasl_ssl",
    }
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

named_choice! {
    /// Whether TLS checks that the broker's certificate names the host we connected to.
    pub enum EndpointIdentification {
        /// Checked, as HTTPS does.
        Https = "https",
        /// Not checked: any certificate the CA signed is accepted, for any host.
        None = "none",
    }
}

named_choice! {
    /// The SASL mechanisms the client speaks.
    pub enum SaslMechanism {
        Plain = "PLAIN",
        ScramSha256 = "SCRAM-SHA-256",
        ScramSha512 = "SCRAM-SHA-512",
    }
}

/// A password: loaded like any string, but `config show`, `{:?}` and every log print it as
/// `***`, so it cannot reach output by accident. [`Secret::expose`] is the one way to read
/// it, and only the code that logs in calls it.
#[derive(Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(from = "String")]
pub struct Secret(String);

/// How a set secret is shown; an empty one shows as empty, so `config show` tells set from
/// unset.
pub const MASKED: &str = "***";

impl Secret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn shown(&self) -> &'static str {
        if self.0.is_empty() { "" } else { MASKED }
    }
}

impl From<String> for Secret {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.shown())
    }
}

named_choice! {
    /// Where a consumer without a checkpoint starts.
    pub enum StartingOffsets {
        Earliest = "earliest",
        Latest = "latest",
    }
}

named_choice! {
    /// The consumer's Parquet codec.
    pub enum ParquetCompression {
        None = "none",
        Snappy = "snappy",
        Gzip = "gzip",
        Lz4 = "lz4",
        Zstd = "zstd",
    }
}

named_choice! {
    /// What the consumer does when offsets it should read no longer exist.
    pub enum DataLossPolicy {
        Fail = "fail",
        Skip = "skip",
    }
}

/// Which report files to write: a comma-separated list of `md`, `html`, `csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReportFormats {
    pub md: bool,
    pub html: bool,
    pub csv: bool,
}

impl Default for ReportFormats {
    fn default() -> Self {
        Self {
            md: true,
            html: true,
            csv: true,
        }
    }
}

impl TryFrom<String> for ReportFormats {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let mut formats = Self {
            md: false,
            html: false,
            csv: false,
        };
        for part in text.split(',').map(str::trim) {
            match part.to_ascii_lowercase().as_str() {
                "md" | "markdown" => formats.md = true,
                "html" => formats.html = true,
                "csv" => formats.csv = true,
                _ => {
                    return Err(format!(
                        "{} is not a list of md, html and csv, like \"md,html,csv\"",
                        Excerpt(&text)
                    ));
                }
            }
        }
        Ok(formats)
    }
}

impl From<ReportFormats> for String {
    fn from(formats: ReportFormats) -> String {
        let names = [
            ("md", formats.md),
            ("html", formats.html),
            ("csv", formats.csv),
        ];
        let chosen: Vec<&str> = names
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        chosen.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(text: &str) -> Result<Trigger, String> {
        Trigger::try_from(text.to_string())
    }

    #[test]
    fn triggers_parse_and_print_back_the_same() {
        for (text, period) in [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3600)),
            ("90s", Duration::from_secs(90)),
            ("1500ms", Duration::from_millis(1500)),
        ] {
            assert_eq!(trigger(text), Ok(Trigger::Every(period)), "{text}");
            assert_eq!(Trigger::Every(period).to_string(), text);
        }
        assert_eq!(
            trigger(" 1.5 s"),
            Ok(Trigger::Every(Duration::from_millis(1500)))
        );
        assert_eq!(trigger("2min").unwrap().to_string(), "2m");
        assert_eq!(trigger("available-now"), Ok(Trigger::AvailableNow));
        assert_eq!(Trigger::AvailableNow.to_string(), "available-now");
        for zero in ["0s", "0ms", "0m", "0h", " 0 s", "0.0s"] {
            assert_eq!(trigger(zero), Ok(Trigger::Continuous), "{zero}");
        }
        assert_eq!(Trigger::Continuous.to_string(), "0s");
        assert_eq!(
            trigger(&Trigger::Continuous.to_string()),
            Ok(Trigger::Continuous)
        );
        let odd = Trigger::Every(Duration::from_micros(1500));
        assert_eq!(trigger(&odd.to_string()), Ok(odd));
    }

    #[test]
    fn bad_triggers_are_refused_with_the_value_quoted() {
        for text in ["", "10", "10x", "s", "-1s", "0.0000000001s", "nans", "infs"] {
            let error = trigger(text).expect_err(text);
            assert!(error.contains("like 10s"), "{text}: {error}");
        }
        // Far past a year: refused rather than a `Duration` overflow panic.
        let huge = format!("{}h", "9".repeat(40));
        assert!(trigger(&huge).is_err());
        let long = "x".repeat(10_000);
        assert!(
            trigger(&long).unwrap_err().len() < 400,
            "the value is quoted cut"
        );
    }

    #[test]
    fn seconds_refuse_negative_non_finite_and_too_large_values() {
        assert_eq!(
            Seconds::<60>::try_from(0.0).unwrap().duration(),
            Duration::ZERO
        );
        assert_eq!(Seconds::<60>::try_from(60.0).unwrap().as_secs_f64(), 60.0);
        for bad in [-1.0, 60.5, f64::NAN, f64::INFINITY] {
            let error = Seconds::<60>::try_from(bad).unwrap_err();
            assert!(error.contains("not negative and at most 60"), "{error}");
        }
        assert!(PositiveSeconds::<10>::try_from(0.0).is_err());
        // Zero to a timer (tokio's interval panics on it), so refused by name.
        assert!(PositiveSeconds::<10>::try_from(1e-10).is_err());
        assert!(PositiveSeconds::<10>::try_from(0.001).is_ok());
        assert!(PositiveSeconds::<MAX_SECONDS>::try_from(1e30).is_err());
        let d = PositiveSeconds::<MAX_SECONDS>::try_from(0.25).unwrap();
        assert_eq!(d.duration(), Duration::from_millis(250));
    }

    #[test]
    fn names_parse_back_and_others_are_refused_listing_the_valid_ones() {
        for name in ParquetCompression::NAMES {
            let codec = ParquetCompression::try_from(name.to_string()).unwrap();
            assert_eq!(codec.to_string(), *name);
        }
        let error = CompressionCodec::try_from("brotli".to_string()).unwrap_err();
        assert_eq!(
            error,
            "\"brotli\" is not one of none, gzip, lz4, snappy, zstd"
        );
    }

    #[test]
    fn optional_addresses_are_empty_or_an_ip_and_port() {
        assert_eq!(
            OptionalAddr::try_from(String::new()),
            Ok(OptionalAddr(None))
        );
        assert_eq!(
            OptionalAddr::try_from(" ".to_string()),
            Ok(OptionalAddr(None))
        );
        let addr = OptionalAddr::try_from("[::1]:8080".to_string()).unwrap();
        assert_eq!(String::from(addr), "[::1]:8080");
        let error = OptionalAddr::try_from("localhost:8080".to_string()).unwrap_err();
        assert!(error.contains("\"localhost:8080\""), "{error}");
    }

    #[test]
    fn byte_sizes_parse_in_binary_units_and_print_back() {
        let size = |t: &str| ByteSize::try_from(t.to_string());
        assert_eq!(size("128MB"), Ok(ByteSize(128 << 20)));
        assert_eq!(size("64MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(size("1GB"), Ok(ByteSize(1 << 30)));
        assert_eq!(size(" 1.5 kb"), Ok(ByteSize(1536)));
        assert_eq!(size("1048576"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize(128 << 20).to_string(), "128MiB");
        assert_eq!(ByteSize(1500).to_string(), "1500");
        for bad in ["", "0", "-1MB", "12XB", "MB", "2TiB", "nanMB"] {
            let error = size(bad).expect_err(bad);
            assert!(error.contains("like 128MB"), "{bad}: {error}");
        }
    }

    #[test]
    fn spans_allow_days_and_zero_and_print_back() {
        let span = |t: &str| Span::try_from(t.to_string());
        assert_eq!(span("7d"), Ok(Span(Duration::from_secs(7 * 86_400))));
        assert_eq!(span("12h"), Ok(Span(Duration::from_secs(12 * 3600))));
        assert_eq!(span("0s"), Ok(Span(Duration::ZERO)));
        for text in ["7d", "12h", "30m", "10s", "0s", "500ms"] {
            assert_eq!(String::from(span(text).unwrap()), text);
        }
        for bad in ["", "7", "-1d", "7w", "400d"] {
            assert!(span(bad).unwrap_err().contains("like 7d"), "{bad}");
        }
        let interval = |t: &str| OptionalInterval::try_from(t.to_string());
        assert_eq!(interval("off"), Ok(OptionalInterval(None)));
        assert_eq!(interval(""), Ok(OptionalInterval(None)));
        assert_eq!(
            interval("1h"),
            Ok(OptionalInterval(Some(Duration::from_secs(3600))))
        );
        assert_eq!(String::from(interval("1h").unwrap()), "1h");
        assert_eq!(String::from(OptionalInterval(None)), "off");
        assert!(interval("0s").unwrap_err().contains("above 0"));
    }
}
