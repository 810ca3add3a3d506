//! The one config layer every subcommand shares.
//!
//! Precedence, each overriding the one before: built-in defaults (the `Default` impls below) <
//! the config file (`config/default.toml`, or `--config FILE`) < `FACTORYPAL__SECTION__KEY`
//! environment variables < command-line flags. This module knows no component: it only turns
//! those layers into plain values, and each subcommand reads its own section.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat, Value, ValueKind};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The config file read when `--config` is not given. A missing default file is fine (the
/// built-in defaults apply); a missing file named with `--config` is an error.
pub const DEFAULT_CONFIG_FILE: &str = "config/default.toml";

/// Environment variables `FACTORYPAL__API__BIND` and the like set `api.bind`.
pub const ENV_PREFIX: &str = "FACTORYPAL";
pub const ENV_SEPARATOR: &str = "__";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub api: ApiSettings,
    pub admin: AdminSettings,
    pub producer: ProducerSettings,
    pub consumer: ConsumerSettings,
    pub status: StatusSettings,
}

/// How to reach the Kafka cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Comma-separated `HOST:PORT` list of bootstrap brokers.
    pub bootstrap: String,
    /// Client id sent with every request; shows up in broker logs and quotas.
    pub client_id: String,
    /// Seconds any single Kafka operation may take before it fails with an error.
    pub timeout: f64,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap: "127.0.0.1:9092".into(),
            client_id: "factorypal".into(),
            timeout: 10.0,
        }
    }
}

impl KafkaSettings {
    pub fn bootstrap_brokers(&self) -> Vec<String> {
        self.bootstrap
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }
}

/// The stand-in for the plant's machines: `serve-api`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Whether `factorypal run` starts the API itself (off when real machines serve the data).
    pub enabled: bool,
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// Directory whose `*.json` files are served, one endpoint per file.
    pub data_dir: PathBuf,
    /// Seconds between two records of a stream (`0` = as fast as the client reads).
    pub delay: f64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([0, 0, 0, 0], 5000)),
            data_dir: PathBuf::from("data_source"),
            delay: 0.1,
        }
    }
}

/// The live status server of `run`, `produce` and `consume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// `HOST:PORT` to serve the status page on; empty: no status server.
    pub bind: String,
}

impl StatusSettings {
    /// The address to serve on, if any (checked when the settings load).
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        self.bind.trim().parse().ok()
    }
}

/// Defaults for topics that `admin` creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub partitions: i32,
    pub replication_factor: i16,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            partitions: 3,
            replication_factor: 1,
        }
    }
}

/// `produce`: where the streams come from and how they are written to Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerSettings {
    /// Base URL for sources that give a `path` rather than a full `url`.
    pub api_url: String,
    /// `skip`: count, log and skip a bad record; `fail`: stop at the first one.
    pub on_bad_record: BadRecordPolicy,
    /// Codec for record batches.
    pub compression: CompressionCodec,
    /// Seconds a partition's batch waits for more records before it is sent.
    pub linger: f64,
    /// A batch is sent once its records add up to this many bytes (uncompressed). Batches are
    /// also capped below the topic's `max.message.bytes` (1 MiB by default), which the
    /// producer reads from the broker before sending.
    pub batch_max_bytes: usize,
    /// The window of records read but not yet acknowledged, per source, in stream offsets:
    /// a record is sent only while it is fewer than this many offsets past the oldest
    /// unacknowledged one (bad records in between count). Bounds memory, and bounds how far
    /// back `--resume` has to look; do not lower it between a crash and its `--resume`.
    pub max_pending_records: usize,
    /// First retry delay in seconds; doubles (with jitter) up to `retry_max_backoff`.
    pub retry_initial_backoff: f64,
    pub retry_max_backoff: f64,
    /// Seconds of failed retries (broker or API) after which the producer gives up.
    pub retry_deadline: f64,
    /// Seconds between progress log lines when stderr is not a terminal.
    pub progress_interval: f64,
    /// Seconds without a byte from the API (or to connect) before the producer treats the
    /// connection as dead and reconnects. Keep it above the API's delay between records.
    pub api_idle_timeout: f64,
    /// The longest line (bytes, without its newline) the producer reads from the API. A
    /// longer line is a bad record (`on_bad_record`), discarded as it streams in, unbuffered.
    pub max_line_bytes: usize,
    /// The streams `produce` knows; a new stream is a new table here, not code.
    pub sources: Vec<SourceSettings>,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            api_url: "http://127.0.0.1:5000".into(),
            on_bad_record: BadRecordPolicy::Skip,
            compression: CompressionCodec::Lz4,
            linger: 0.005,
            batch_max_bytes: 512 * 1024,
            max_pending_records: 60_000,
            retry_initial_backoff: 0.1,
            retry_max_backoff: 5.0,
            retry_deadline: 120.0,
            progress_interval: 10.0,
            api_idle_timeout: 60.0,
            max_line_bytes: 1024 * 1024,
            sources: vec![
                SourceSettings {
                    name: "metrics".into(),
                    path: Some("/stream_data_metrics".into()),
                    url: None,
                    topic: "metrics".into(),
                    key: Some("id".into()),
                },
                SourceSettings {
                    name: "workorder".into(),
                    path: Some("/stream_data_workorder".into()),
                    url: None,
                    topic: "workorder".into(),
                    key: Some("product".into()),
                },
            ],
        }
    }
}

impl ProducerSettings {
    pub fn linger(&self) -> Duration {
        Duration::from_secs_f64(self.linger)
    }

    pub fn retry_policy(&self) -> crate::backoff::RetryPolicy {
        crate::backoff::RetryPolicy {
            initial: Duration::from_secs_f64(self.retry_initial_backoff),
            max: Duration::from_secs_f64(self.retry_max_backoff),
            deadline: Duration::from_secs_f64(self.retry_deadline),
        }
    }

    pub fn api_idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.api_idle_timeout)
    }
}

/// One stream: `factorypal produce NAME` reads it and writes every record to `topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    pub name: String,
    /// Path under `producer.api_url`, e.g. `/stream_data_metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Full URL instead of `path`, e.g. `http://gateway:8000/line3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    pub topic: String,
    /// JSON field whose value becomes the record key; none means unkeyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadRecordPolicy {
    Skip,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionCodec {
    None,
    Gzip,
    Lz4,
    Snappy,
    Zstd,
}

/// `consume`: Kafka → Parquet (or console) in micro-batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// Output root: `OUTPUT/TOPIC/part-*.parquet`.
    pub output: PathBuf,
    /// Checkpoint root; empty means `OUTPUT/TOPIC/_checkpoint`, otherwise `CHECKPOINT/TOPIC`.
    pub checkpoint: PathBuf,
    /// `10s`, `500ms`, `1m`: how often a micro-batch starts; `available-now`: process what is
    /// there at start, then exit.
    pub trigger: String,
    /// New records per topic per micro-batch; 0 = unlimited.
    pub max_offsets_per_trigger: u64,
    pub max_records_per_file: usize,
    /// Where to start when there is no checkpoint.
    pub starting_offsets: StartingOffsets,
    pub compression: ParquetCompression,
    /// `skip`: write bad records to `_bad_records/` and go on; `fail`: stop.
    pub on_bad_record: BadRecordPolicy,
    /// What to do when offsets to read no longer exist (retention removed them).
    pub on_data_loss: DataLossPolicy,
    /// Rows the console sink shows per batch and topic.
    pub console_rows: usize,
    /// Seconds a broker or disk outage may last before the consumer gives up (its checkpoint
    /// lets a restart continue).
    pub retry_deadline: f64,
    /// Topics to consume, each with the schema of its JSON values (columns in this order).
    pub topics: IndexMap<String, ConsumerTopic>,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        let schema = |cols: &[(&str, ColumnType)]| ConsumerTopic {
            schema: cols.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
        };
        Self {
            output: PathBuf::from("database"),
            checkpoint: PathBuf::new(),
            trigger: "10s".into(),
            max_offsets_per_trigger: 1000,
            max_records_per_file: 10_000,
            starting_offsets: StartingOffsets::Earliest,
            compression: ParquetCompression::Snappy,
            on_bad_record: BadRecordPolicy::Skip,
            on_data_loss: DataLossPolicy::Fail,
            console_rows: 20,
            retry_deadline: 300.0,
            topics: [
                (
                    "metrics".to_string(),
                    schema(&[
                        ("id", ColumnType::Int32),
                        ("val", ColumnType::Float64),
                        ("time", ColumnType::Timestamp),
                    ]),
                ),
                (
                    "workorder".to_string(),
                    schema(&[
                        ("time", ColumnType::Timestamp),
                        ("product", ColumnType::Int32),
                        ("production", ColumnType::Float64),
                    ]),
                ),
            ]
            .into_iter()
            .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerTopic {
    pub schema: IndexMap<String, ColumnType>,
}

/// The column types a schema may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Bool,
    Int32,
    Int64,
    Float32,
    Float64,
    String,
    /// Unix seconds (integer or fractional) or RFC 3339 text; stored as microseconds, UTC.
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartingOffsets {
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParquetCompression {
    None,
    Snappy,
    Gzip,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataLossPolicy {
    Fail,
    Skip,
}

/// When micro-batches start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Every(Duration),
    AvailableNow,
}

impl Trigger {
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "available-now" {
            return Some(Self::AvailableNow);
        }
        let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic())?);
        let n: f64 = number
            .trim()
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n > 0.0)?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            _ => return None,
        };
        Some(Self::Every(Duration::from_secs_f64(secs)))
    }
}

impl ConsumerSettings {
    pub fn trigger(&self) -> Trigger {
        Trigger::parse(&self.trigger).expect("validated when the settings were loaded")
    }

    pub fn retry_policy(&self) -> crate::backoff::RetryPolicy {
        crate::backoff::RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            deadline: Duration::from_secs_f64(self.retry_deadline),
        }
    }
}

/// Why the settings could not be loaded. Every variant is a usage error (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {path} does not exist: create it or point --config at an existing file")]
    MissingFile { path: PathBuf },
    #[error("config file {path} is not valid TOML: {reason}")]
    MalformedFile { path: PathBuf, reason: String },
    #[error("unknown setting `{key}` (from {origin}); valid keys are: {valid}")]
    UnknownKey {
        key: String,
        origin: String,
        valid: String,
    },
    #[error("setting `{key}` (from {origin}) has the wrong type: {reason}")]
    WrongType {
        key: String,
        origin: String,
        reason: String,
    },
    #[error("setting `{key}` = {value} is invalid: expected {expected}")]
    Invalid {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("could not load settings: {0}")]
    Other(String),
}

impl SettingsError {
    /// Replaces the `config` crate's origin labels with what a user recognizes: the file path
    /// as they gave it, the exact environment variable, or "command line".
    fn with_origin_named(self, file_label: &str) -> Self {
        let rename = |origin: String, key: &str| match origin.as_str() {
            "the environment" => format!(
                "environment variable {ENV_PREFIX}{ENV_SEPARATOR}{}",
                key.to_uppercase().replace('.', ENV_SEPARATOR)
            ),
            "command line" => origin,
            _ => format!("config file {file_label}"),
        };
        match self {
            Self::UnknownKey { key, origin, valid } => Self::UnknownKey {
                origin: rename(origin, &key),
                key,
                valid,
            },
            Self::WrongType {
                key,
                origin,
                reason,
            } => Self::WrongType {
                origin: rename(origin, &key),
                key,
                reason,
            },
            other => other,
        }
    }
}

/// Where the settings come from, besides the built-in defaults and the environment.
#[derive(Debug, Default, Clone)]
pub struct SettingsSources {
    /// `--config FILE`; `None` reads [`DEFAULT_CONFIG_FILE`] if it exists.
    pub config_file: Option<PathBuf>,
    /// Command-line flags as `(dotted key, value)`, applied last.
    pub overrides: Vec<(String, Value)>,
}

impl SettingsSources {
    pub fn set(&mut self, key: &str, value: impl Into<ValueKind>) {
        self.overrides.push((
            key.to_string(),
            Value::new(Some(&"command line".to_string()), value),
        ));
    }

    /// Sets `key` only when the flag was given.
    pub fn set_opt<T: Into<ValueKind>>(&mut self, key: &str, value: Option<T>) {
        if let Some(v) = value {
            self.set(key, v);
        }
    }
}

impl Settings {
    /// Loads the settings from every layer, using the process environment.
    pub fn load(sources: &SettingsSources) -> Result<Self, SettingsError> {
        Self::load_with_env(sources, std::env::vars())
    }

    /// Like [`Settings::load`], with the environment passed in (so tests need not mutate theirs).
    pub fn load_with_env(
        sources: &SettingsSources,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder();
        match &sources.config_file {
            Some(path) => builder = builder.add_source(read_file(path, true)?),
            None => {
                let path = Path::new(DEFAULT_CONFIG_FILE);
                if path.exists() {
                    builder = builder.add_source(read_file(path, false)?);
                }
            }
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}{ENV_SEPARATOR}")))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix(ENV_PREFIX)
                .separator(ENV_SEPARATOR)
                .try_parsing(true)
                .source(Some(env)),
        );
        for (key, value) in &sources.overrides {
            builder = builder
                .set_override(key.as_str(), value.clone())
                .map_err(|e| SettingsError::Other(e.to_string()))?;
        }
        let config = builder
            .build()
            .map_err(|e| SettingsError::Other(e.to_string()))?;

        let file_label = sources
            .config_file
            .clone()
            .unwrap_or_else(|| DEFAULT_CONFIG_FILE.into())
            .display()
            .to_string();
        let name_origin = |e: SettingsError| e.with_origin_named(&file_label);
        check_known_keys(&config).map_err(name_origin)?;
        let settings: Settings = config
            .try_deserialize()
            .map_err(wrong_type)
            .map_err(name_origin)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        fn seconds(key: &'static str, v: f64, max: f64) -> Result<(), SettingsError> {
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(())
            } else {
                Err(SettingsError::Invalid {
                    key,
                    value: v.to_string(),
                    expected: "a number of seconds, not negative",
                })
            }
        }
        seconds("kafka.timeout", self.kafka.timeout, 86_400.0)?;
        if self.kafka.timeout == 0.0 {
            return Err(SettingsError::Invalid {
                key: "kafka.timeout",
                value: "0".into(),
                expected: "a number of seconds above 0",
            });
        }
        seconds("api.delay", self.api.delay, 3_600.0)?;
        if self.kafka.bootstrap_brokers().is_empty() {
            return Err(SettingsError::Invalid {
                key: "kafka.bootstrap",
                value: format!("{:?}", self.kafka.bootstrap),
                expected: "a comma-separated list of HOST:PORT",
            });
        }
        if self.admin.partitions < 1 {
            return Err(SettingsError::Invalid {
                key: "admin.partitions",
                value: self.admin.partitions.to_string(),
                expected: "a partition count of at least 1",
            });
        }
        self.validate_producer()?;
        self.validate_consumer()?;
        if !self.status.bind.trim().is_empty() && self.status.bind_addr().is_none() {
            return Err(SettingsError::Invalid {
                key: "status.bind",
                value: format!("{:?}", self.status.bind),
                expected: "HOST:PORT with an IP address, like 127.0.0.1:8080, or empty for none",
            });
        }
        if self.admin.replication_factor < 1 {
            return Err(SettingsError::Invalid {
                key: "admin.replication_factor",
                value: self.admin.replication_factor.to_string(),
                expected: "a replication factor of at least 1",
            });
        }
        Ok(())
    }

    fn validate_producer(&self) -> Result<(), SettingsError> {
        let p = &self.producer;
        fn positive(key: &'static str, v: f64) -> Result<(), SettingsError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(SettingsError::Invalid {
                    key,
                    value: v.to_string(),
                    expected: "a number of seconds above 0",
                })
            }
        }
        if !(0.0..=60.0).contains(&p.linger) {
            return Err(SettingsError::Invalid {
                key: "producer.linger",
                value: p.linger.to_string(),
                expected: "seconds from 0 to 60",
            });
        }
        positive("producer.retry_initial_backoff", p.retry_initial_backoff)?;
        positive("producer.retry_max_backoff", p.retry_max_backoff)?;
        positive("producer.retry_deadline", p.retry_deadline)?;
        positive("producer.progress_interval", p.progress_interval)?;
        positive("producer.api_idle_timeout", p.api_idle_timeout)?;
        if p.batch_max_bytes < 1024 {
            return Err(SettingsError::Invalid {
                key: "producer.batch_max_bytes",
                value: p.batch_max_bytes.to_string(),
                expected: "at least 1024 bytes",
            });
        }
        if p.max_line_bytes < 1 {
            return Err(SettingsError::Invalid {
                key: "producer.max_line_bytes",
                value: p.max_line_bytes.to_string(),
                expected: "at least 1 byte",
            });
        }
        if p.max_pending_records < 1 {
            return Err(SettingsError::Invalid {
                key: "producer.max_pending_records",
                value: p.max_pending_records.to_string(),
                expected: "at least 1",
            });
        }
        let mut names = std::collections::HashSet::new();
        for source in &p.sources {
            if source.name.is_empty() || !names.insert(source.name.as_str()) {
                return Err(SettingsError::Invalid {
                    key: "producer.sources",
                    value: format!("{:?}", source.name),
                    expected: "a non-empty name, different for every source",
                });
            }
            if source.path.is_some() == source.url.is_some() {
                return Err(SettingsError::Invalid {
                    key: "producer.sources",
                    value: format!("source {:?}", source.name),
                    expected: "exactly one of `path` and `url`",
                });
            }
        }
        Ok(())
    }

    fn validate_consumer(&self) -> Result<(), SettingsError> {
        let c = &self.consumer;
        if Trigger::parse(&c.trigger).is_none() {
            return Err(SettingsError::Invalid {
                key: "consumer.trigger",
                value: format!("{:?}", c.trigger),
                expected: "an interval like 10s, 500ms, 2m, or available-now",
            });
        }
        if c.max_records_per_file == 0 {
            return Err(SettingsError::Invalid {
                key: "consumer.max_records_per_file",
                value: "0".into(),
                expected: "at least 1",
            });
        }
        if !(c.retry_deadline.is_finite() && c.retry_deadline > 0.0) {
            return Err(SettingsError::Invalid {
                key: "consumer.retry_deadline",
                value: c.retry_deadline.to_string(),
                expected: "a number of seconds above 0",
            });
        }
        for (topic, t) in &c.topics {
            if t.schema.is_empty() {
                return Err(SettingsError::Invalid {
                    key: "consumer.topics",
                    value: topic.clone(),
                    expected: "a schema with at least one column",
                });
            }
        }
        Ok(())
    }

    /// The effective settings as TOML, for `factorypal config show`.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("settings always serialize to TOML")
    }
}

fn read_file(
    path: &Path,
    required: bool,
) -> Result<File<config::FileSourceFile, FileFormat>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound && required {
            SettingsError::MissingFile { path: path.into() }
        } else {
            SettingsError::MalformedFile {
                path: path.into(),
                reason: e.to_string(),
            }
        }
    })?;
    // Parse once here so a syntax error names the file, line and column.
    if let Err(e) = text.parse::<toml::Table>() {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: ")
        });
        return Err(SettingsError::MalformedFile {
            path: path.into(),
            reason: format!("{}{}", at.unwrap_or_default(), e.message()),
        });
    }
    // Read through the path (not the text) so every value remembers which file set it.
    Ok(File::from(path).format(FileFormat::Toml).required(true))
}

/// Tables whose keys are names the user chooses (topics), not settings; serde checks inside.
const OPEN_TABLES: &[&str] = &["consumer.topics"];

/// Compares every key the layers set against the keys of [`Settings`], so a typo is an error
/// that names the key instead of a setting that silently does nothing.
fn check_known_keys(config: &Config) -> Result<(), SettingsError> {
    let known = toml::Value::try_from(Settings::default()).expect("settings serialize");
    match &config.cache.kind {
        ValueKind::Table(table) => {
            check_table(table, known.as_table().expect("settings are a table"), "")
        }
        _ => Ok(()),
    }
}

fn check_table(
    actual: &config::Map<String, Value>,
    known: &toml::Table,
    prefix: &str,
) -> Result<(), SettingsError> {
    for (key, value) in actual {
        let path = format!("{prefix}{key}");
        match known.get(key) {
            None => {
                return Err(SettingsError::UnknownKey {
                    origin: origin_of(value),
                    valid: known
                        .keys()
                        .map(|k| format!("{prefix}{k}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    key: path,
                });
            }
            Some(toml::Value::Table(_)) if OPEN_TABLES.contains(&path.as_str()) => {}
            Some(toml::Value::Table(sub)) => match &value.kind {
                ValueKind::Table(inner) => check_table(inner, sub, &format!("{path}."))?,
                _ => {
                    return Err(SettingsError::WrongType {
                        key: path,
                        origin: origin_of(value),
                        reason: "expected a table (section)".into(),
                    });
                }
            },
            Some(_) => {}
        }
    }
    Ok(())
}

fn origin_of(value: &Value) -> String {
    value.origin().unwrap_or("a config file").to_string()
}

fn wrong_type(err: config::ConfigError) -> SettingsError {
    match err {
        config::ConfigError::At { error, origin, key } => SettingsError::WrongType {
            key: key.unwrap_or_default(),
            origin: origin.unwrap_or_else(|| "settings".into()),
            reason: error.to_string(),
        },
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => SettingsError::WrongType {
            key: key.unwrap_or_default(),
            origin: origin.unwrap_or_else(|| "settings".into()),
            reason: format!("found {unexpected}, expected {expected}"),
        },
        other => SettingsError::Other(other.to_string()),
    }
}
