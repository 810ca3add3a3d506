//! factorypal: the plant's data pipeline in one binary. This page is the map: who owns what,
//! how a record travels, and where each promise the pipeline makes is kept.
//!
//! ```text
//!  data dir *.json ─► api ─HTTP NDJSON─► produce ─► Kafka ─► consume ─► sink (Parquet, Delta, console)
//!                                           ▲          ▲         │
//!                          admin (topics) ──┴──────────┘    checkpoint (plan/commit)
//!
//!  run = api + produce + consume in one process; status = counters served as a page/JSON/metrics
//! ```
//!
//! # Modules
//! * [`cli`] and [`settings`]: the command line and the one config layer (defaults < file <
//!   `FACTORYPAL__*` env < flags). Every value is checked once, at load, by its type
//!   (`settings::types`) or a rule (`settings::validate`); components read plain values.
//!   `main.rs` only parses, loads, dispatches and turns a [`failure::Failure`] into an exit code.
//! * [`api`]: `serve-api`, the stand-in for the machines (data loading, streaming); knows
//!   nothing of Kafka. `http` (private) is the accept loop both HTTP servers share, with
//!   the connection limits that keep idle or hostile clients from locking others out.
//! * [`kafka`]: the client layer: connecting within `kafka.timeout`, secured as the settings
//!   say ([`kafka::security`]: TLS, SASL, the password kept out of output), our own
//!   connection for the requests rskafka does not send (`wire`: metadata with replicas,
//!   topic configs, CreateTopics; and the first contact, whose errors say what is wrong),
//!   the consumer's fetches ([`kafka::fetch`], reading record batches with no allocation
//!   per record in [`kafka::records`]), topic-name rules, the Java-compatible partitioner, and which Kafka errors are worth
//!   retrying ([`kafka::KafkaError::is_retriable`]).
//! * [`admin`]: `admin` topic management on top of [`kafka`].
//! * [`produce`]: API streams → Kafka (plan → prepare → writers → pump; see its docs).
//! * [`consume`]: Kafka → Arrow micro-batches → `sink`s, one loop and one file-worker thread
//!   per topic (see its docs).
//! * [`lake`]: Delta Lake tables (delta-rs): where a topic's table lives (a directory or
//!   `s3://` with `[storage]`), opening it, creating it from the topic's schema, and which
//!   storage errors are worth retrying. The Delta sink and `compact` build on it.
//! * [`compact`]: rewrites a Delta table's small files into big ones and vacuums, safe while
//!   the consumer appends (see its docs for why, and for the vacuum's 1-hour orphan floor).
//! * [`report`]: `factorypal report`, the plant's question answered from the output (no
//!   Kafka): which metric ids go with each product's interval output (r, rho, p, BH),
//!   rendered as Markdown, HTML with inline SVG, and CSV. It reads only committed Parquet
//!   files (`consume::committed_files`) or a Delta table's current snapshot.
//! * [`run`]: all of it in one process, stopping as one.
//! * [`status`]: live counters and offsets, served by `--status-bind`.
//! * Shared, private: `backoff` (retry timing and the one retry decision, `Retry::pause`),
//!   `excerpt` (quoting untrusted values, cut at 200 bytes), `durable` (fsync'd renames),
//!   `sink` (the small trait Parquet, Delta and console implement; `sink::day` splits rows by
//!   UTC day for `partition_by_day`); public: [`json`] (compaction),
//!   [`failure`] (usage error or failure), [`gen_data`] (sample data), [`shutdown`]
//!   (SIGINT/SIGTERM → a cancellation token).
//!
//! # How a record travels
//! 1. `api` streams a file as NDJSON, `?offset=N` resuming at line N.
//! 2. `produce::source` reads lines (cut in linear time, at most `producer.max_line_bytes`),
//!    numbering each with its stream offset; `produce::record` keys it and picks its
//!    partition; `produce::writer` batches per partition with the source and source-offset as
//!    headers.
//! 3. `consume` plans a batch of offset ranges (durably, before any output), fetches them,
//!    and its file worker decodes each payload into its topic's schema, writes the sink's
//!    files, then commits the plan.
//!
//! # Where each guarantee is kept
//! * **Values exact**: `consume::convert` turns each value's JSON text into its column type
//!   exactly (correctly rounded floats, decimal timestamps) or makes it a bad record.
//! * **Nothing lost, nothing twice (produce)**: `produce::window` bounds records in flight by
//!   stream offset; `produce::resume` finds from the topic's own headers where to restart;
//!   the writer checks what a failed attempt wrote before retrying it.
//! * **Exactly once into files (consume)**: `consume::checkpoint` (plan before, commit after),
//!   `consume::reconcile` (output the checkpoint does not account for stops the start),
//!   `consume::lock` (one writer per checkpoint and per output partition). With the Delta
//!   sink the table's own log is the checkpoint: one commit holds a batch's files and its
//!   offsets as `txn` actions (`sink::delta`), so readers never see a batch in flight.
//! * **Bad input never silently dropped**: producer bad lines are counted and logged with
//!   their source-offset (`produce::bad_records`); consumer bad records go to
//!   `_bad_records/` with their payload, on disk or beside a Delta table on S3
//!   (`consume::bad_records`).
//! * **Bounded memory and time**: the produce window and per-partition queues, the line
//!   limit, the consumer's bounded channel to its file worker, `http`'s header and write-stall
//!   timeouts and per-client connection share; every Kafka call bounded by `kafka.timeout`.
//! * **Secrets and big values stay out of logs**: source URLs are masked wherever shown
//!   (`produce::url`); values are quoted through `excerpt`.
//! * **One failure policy**: a failed source or topic stops the others after they
//!   flush/commit what they hold, and the command exits 1 with the first error
//!   (`produce::run`, `consume::run`, `run`'s `Outcome`); usage errors exit 2
//!   ([`failure::Classify`]). Retries: `backoff::Retry::pause` with the module's classifier
//!   (`KafkaError::is_retriable` for Kafka; HTTP 4xx are final in `produce::source`).

pub mod admin;
pub mod api;
mod backoff;
pub mod cli;
pub mod compact;
pub mod consume;
mod durable;
mod excerpt;
pub mod failure;
pub mod gen_data;
mod http;
pub mod json;
pub mod kafka;
pub mod lake;
pub mod produce;
pub mod report;
pub mod run;
pub mod settings;
pub mod shutdown;
mod sink;
pub mod status;

/// The connection limits both HTTP servers take (tests build servers with small ones).
pub use http::Limits;
