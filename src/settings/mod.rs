//! The one config layer every subcommand shares.
//!
//! Precedence, each overriding the one before: built-in defaults (the `Default` impls below) <
//! the config file (`config/default.toml`, or `--config FILE`) < `FACTORYPAL__SECTION__KEY`
//! environment variables < command-line flags. This module knows no component: it only turns
//! those layers into plain, already valid values, and each subcommand reads its own section.
//!
//! * this file: [`Settings`] and its sections, every key with its doc and its default;
//! * [`types`]: value types that check themselves while they load ([`Seconds`], [`Trigger`],
//!   [`OptionalAddr`], the enums), so nothing re-parses a setting later;
//! * `validate.rs`: the few rules a type cannot hold (a number's lower bound, rules across
//!   keys);
//! * `load.rs`: reading the layers, refusing unknown keys, and naming the key and the origin
//!   (file, environment variable or flag) of every bad value.
//!
//! # Adding a setting
//!
//! 1. A field in its section struct below, with a doc comment, typed so that a loaded value is
//!    a valid one: [`PositiveSeconds`] for a timeout or interval ([`Seconds`] when 0 is
//!    allowed; `Seconds<60>` caps it at 60), an enum for a choice, a type in [`types`] for
//!    anything parsed from text. Never a `String` parsed (or `expect`ed) where it is used.
//! 2. Its default, in the section's `Default` impl.
//! 3. The key, its default and a comment in `config/default.toml`, and a row in README's
//!    Configuration table (tests/config.rs fails until both have it).
//! 4. Only if a flag sets it: `id = "section.key"` on the flag in `cli.rs`; the id is the key,
//!    nothing else maps flags to settings.
//!
//! The environment variable, the unknown-key check and `config show` follow from the field.
//! A lower bound on a plain number or a rule across keys goes into `validate.rs`.

mod load;
mod types;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

pub use load::{DEFAULT_CONFIG_FILE, ENV_PREFIX, ENV_SEPARATOR, SettingsError, SettingsSources};
pub use types::{
    BadRecordPolicy, ByteSize, ColumnType, CompressionCodec, DataLossPolicy,
    EndpointIdentification, OptionalAddr, OptionalInterval, ParquetCompression, PositiveSeconds,
    ReportFormats, SaslMechanism, Seconds, Secret, SecurityProtocol, SinkKind, Span,
    StartingOffsets, Trigger,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub api: ApiSettings,
    pub admin: AdminSettings,
    pub producer: ProducerSettings,
    pub consumer: ConsumerSettings,
    pub storage: StorageSettings,
    pub status: StatusSettings,
    pub report: ReportSettings,
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
    pub timeout: PositiveSeconds<86_400>,
    /// `plaintext`, `ssl` (TLS), `sasl_plaintext` (a login, unencrypted) or `sasl_ssl` (a
    /// login over TLS): Kafka's `security.protocol`.
    pub security_protocol: SecurityProtocol,
    /// PEM file with the CA certificates that sign the brokers' certificates; empty: the
    /// system's root certificates. TLS protocols only.
    pub ssl_ca_location: PathBuf,
    /// PEM file with this client's certificate (chain), for brokers that demand mutual TLS;
    /// together with `ssl_key_location`.
    pub ssl_certificate_location: PathBuf,
    /// PEM file with the private key of `ssl_certificate_location`.
    pub ssl_key_location: PathBuf,
    /// `https`: the broker's certificate must name the host connected to; `none`: not
    /// checked (logged as a warning at every start).
    pub ssl_endpoint_identification: EndpointIdentification,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`. SASL protocols only.
    pub sasl_mechanism: SaslMechanism,
    pub sasl_username: String,
    /// The password itself; prefer `sasl_password_file` (or the environment) over writing it
    /// into a config file. Shown as `***`.
    pub sasl_password: Secret,
    /// A file holding the password (one line; a trailing newline is ignored), read at
    /// start. A file anyone on the machine may read is used, with a warning.
    pub sasl_password_file: PathBuf,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap: "127.0.0.1:9092".into(),
            client_id: "factorypal".into(),
            timeout: PositiveSeconds::from_secs(10.0),
            security_protocol: SecurityProtocol::Plaintext,
            ssl_ca_location: PathBuf::new(),
            ssl_certificate_location: PathBuf::new(),
            ssl_key_location: PathBuf::new(),
            ssl_endpoint_identification: EndpointIdentification::Https,
            sasl_mechanism: SaslMechanism::Plain,
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            sasl_password_file: PathBuf::new(),
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
        self.timeout.duration()
    }
}

/// The stand-in for the plant's machines: `serve-api`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Whether `factorypal run` starts the API itself (off when real machines serve the data).
    pub enabled: bool,
    /// Address the HTTP server listens on: loopback unless told otherwise, so a machine
    /// stand-in is not exposed to the network by default (compose binds `0.0.0.0` itself).
    pub bind: SocketAddr,
    /// Directory whose `*.json` files are served, one endpoint per file.
    pub data_dir: PathBuf,
    /// Seconds between two records of a stream (`0` = as fast as the client reads).
    pub delay: Seconds<3_600>,
    /// Seconds a client has to send a complete request head, counted from when the server
    /// starts waiting for one: on connect, and after each response on a kept-alive connection
    /// (so this is also how long an idle kept-alive connection stays open).
    pub header_timeout: PositiveSeconds<86_400>,
    /// Seconds a response may stay stuck on a client that does not read it; then the
    /// connection is closed.
    pub idle_timeout: PositiveSeconds<86_400>,
    /// Connections served at once; a client beyond it is refused with `503`.
    pub max_connections: usize,
    /// Connections one client (an IPv4 address, or an IPv6 /64) may hold at once; more are
    /// refused with `503`, so one client cannot take the whole `max_connections`.
    pub max_connections_per_client: usize,
    /// Whether a `*.json` symlink in the data dir that resolves outside it is served; off, such
    /// a link refuses the start, naming it.
    pub follow_symlinks: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 5000)),
            data_dir: PathBuf::from("data_source"),
            delay: Seconds::from_secs(0.1),
            header_timeout: PositiveSeconds::from_secs(10.0),
            idle_timeout: PositiveSeconds::from_secs(300.0),
            max_connections: 4096,
            max_connections_per_client: 256,
            follow_symlinks: false,
        }
    }
}

impl ApiSettings {
    pub fn header_timeout(&self) -> Duration {
        self.header_timeout.duration()
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout.duration()
    }
}

/// The live status server of `run`, `produce` and `consume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// `HOST:PORT` to serve the status page on; empty: no status server.
    pub bind: OptionalAddr,
}

impl StatusSettings {
    /// The address to serve on, if any.
    pub fn bind_addr(&self) -> Option<SocketAddr> {
        self.bind.0
    }
}

/// `factorypal report`: which topics and columns hold the work orders and the metrics, and
/// the analysis choices. It reads the consumer's output (`consumer.output`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSettings {
    /// The work-order topic and its product, cumulative-output and time columns.
    pub workorder_topic: String,
    pub product_column: String,
    pub output_column: String,
    pub workorder_time_column: String,
    /// The metrics topic and its id, value and time columns.
    pub metrics_topic: String,
    pub metric_id_column: String,
    pub metric_value_column: String,
    pub metric_time_column: String,
    /// Metrics are also tested 1..=max_lag intervals before the output (0: same interval only).
    pub max_lag: usize,
    /// A relation is significant when its Benjamini–Hochberg adjusted p is at most this.
    pub alpha: f64,
    /// Directory the report files go to.
    pub out: PathBuf,
    /// Which files to write.
    pub formats: ReportFormats,
}

impl Default for ReportSettings {
    fn default() -> Self {
        Self {
            workorder_topic: "workorder".into(),
            product_column: "product".into(),
            output_column: "production".into(),
            workorder_time_column: "time".into(),
            metrics_topic: "metrics".into(),
            metric_id_column: "id".into(),
            metric_value_column: "val".into(),
            metric_time_column: "time".into(),
            max_lag: 3,
            alpha: 0.05,
            out: PathBuf::from("report"),
            formats: ReportFormats::default(),
        }
    }
}

/// Object storage for `s3://` outputs. Credentials come from the usual AWS environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, profiles, instance
/// roles) and are never part of the settings, so `config show` cannot print them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `http(s)://HOST:PORT` of an S3-compatible store (MinIO, s3proxy, Ceph); empty: AWS.
    pub endpoint: String,
    /// The bucket's region; empty: `AWS_REGION` from the environment, else `us-east-1`.
    pub region: String,
    /// Allow a plain-HTTP endpoint (a store on a private network or loopback).
    pub allow_http: bool,
}

/// Defaults for topics that `admin` creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    /// At least 1.
    pub partitions: i32,
    /// At least 1.
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
    pub linger: Seconds<60>,
    /// A batch is sent once its records add up to this many bytes (uncompressed; at least
    /// 1024). Batches are also capped below the topic's `max.message.bytes` (1 MiB by
    /// default), which the producer reads from the broker before sending.
    pub batch_max_bytes: usize,
    /// The window of records read but not yet acknowledged, per source, in stream offsets:
    /// a record is sent only while it is fewer than this many offsets past the oldest
    /// unacknowledged one (bad records in between count). Bounds memory, and bounds how far
    /// back `--resume` has to look; do not lower it between a crash and its `--resume`.
    pub max_pending_records: usize,
    /// First retry delay in seconds; doubles (with jitter) up to `retry_max_backoff`.
    pub retry_initial_backoff: PositiveSeconds,
    pub retry_max_backoff: PositiveSeconds,
    /// Seconds of failed retries (broker or API) after which the producer gives up.
    pub retry_deadline: PositiveSeconds,
    /// Seconds between progress log lines when stderr is not a terminal.
    pub progress_interval: PositiveSeconds,
    /// Seconds without a byte from the API (or to connect) before the producer treats the
    /// connection as dead and reconnects. Keep it above the API's delay between records.
    pub api_idle_timeout: PositiveSeconds,
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
            linger: Seconds::from_secs(0.005),
            batch_max_bytes: 512 * 1024,
            max_pending_records: 60_000,
            max_line_bytes: 1024 * 1024,
            retry_initial_backoff: PositiveSeconds::from_secs(0.1),
            retry_max_backoff: PositiveSeconds::from_secs(5.0),
            retry_deadline: PositiveSeconds::from_secs(120.0),
            progress_interval: PositiveSeconds::from_secs(10.0),
            api_idle_timeout: PositiveSeconds::from_secs(60.0),
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
        self.linger.duration()
    }

    pub fn retry_policy(&self) -> crate::backoff::RetryPolicy {
        crate::backoff::RetryPolicy {
            initial: self.retry_initial_backoff.duration(),
            max: self.retry_max_backoff.duration(),
            deadline: self.retry_deadline.duration(),
        }
    }

    pub fn api_idle_timeout(&self) -> Duration {
        self.api_idle_timeout.duration()
    }
}

/// One stream: `factorypal produce NAME` reads it and writes every record to `topic`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Non-empty, different for every source.
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

/// `consume`: Kafka → Parquet (or console) in micro-batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// `parquet`, `console` or `delta` (`--sink`).
    pub sink: SinkKind,
    /// Output root: `OUTPUT/TOPIC/...`; `s3://BUCKET/PREFIX` for the Delta sink on object
    /// storage (see `[storage]`).
    pub output: PathBuf,
    /// Checkpoint root; empty means `OUTPUT/TOPIC/_checkpoint`, otherwise `CHECKPOINT/TOPIC`.
    pub checkpoint: PathBuf,
    /// How often a micro-batch starts, or `available-now`: process what is there at start,
    /// then exit.
    pub trigger: Trigger,
    /// New records per topic per micro-batch; 0 = unlimited.
    pub max_offsets_per_trigger: u64,
    /// At least 1.
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
    pub retry_deadline: PositiveSeconds,
    /// `compact`: rewrite a Delta table's smaller files into files of about this size
    /// (`--target-file-size`; `128MB`, `64MiB`, `1GB`, or bytes).
    pub compact_target_file_size: ByteSize,
    /// `compact`: delete data files removed from the table longer ago than this
    /// (`--vacuum-retention`; `7d`, `12h`, `0s`). Untracked files are deleted only once older
    /// than this and at least an hour (see `compact`).
    pub vacuum_retention: Span,
    /// `run` with the Delta sink: compact every table this often (`1h`, `30m`), or `off`.
    pub compact_interval: OptionalInterval,
    /// Topics to consume, each with the schema of its JSON values (columns in this order).
    pub topics: IndexMap<String, ConsumerTopic>,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        let schema = |cols: &[(&str, ColumnType)]| ConsumerTopic {
            schema: cols.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            partition_by_day: None,
        };
        Self {
            sink: SinkKind::Parquet,
            output: PathBuf::from("database"),
            checkpoint: PathBuf::new(),
            trigger: Trigger::Every(Duration::from_secs(10)),
            max_offsets_per_trigger: 1000,
            max_records_per_file: 10_000,
            starting_offsets: StartingOffsets::Earliest,
            compression: ParquetCompression::Snappy,
            on_bad_record: BadRecordPolicy::Skip,
            on_data_loss: DataLossPolicy::Fail,
            console_rows: 20,
            retry_deadline: PositiveSeconds::from_secs(300.0),
            compact_target_file_size: ByteSize(128 << 20),
            vacuum_retention: Span(Duration::from_secs(7 * 86_400)),
            compact_interval: OptionalInterval(None),
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

impl ConsumerSettings {
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    pub fn retry_policy(&self) -> crate::backoff::RetryPolicy {
        crate::backoff::RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            deadline: self.retry_deadline.duration(),
        }
    }
}

/// One consumed topic: the schema of its JSON values (at least one column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerTopic {
    pub schema: IndexMap<String, ColumnType>,
    /// A `timestamp` column of `schema` whose UTC day (`YYYY-MM-DD`) partitions the output:
    /// `OUTPUT/TOPIC/date=2021-06-22/part-....parquet` (rows without a time under
    /// `date=__HIVE_DEFAULT_PARTITION__`), the Hive layout pyarrow, DuckDB and Spark read as a
    /// `date` column. Unset: one flat directory. The schema itself may not have a `date`
    /// column then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by_day: Option<String>,
}
