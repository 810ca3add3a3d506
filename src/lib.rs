//! factorypal: the plant's data pipeline in one binary.
//!
//! ```text
//!  data_source/*.json ──► api (serve-api) ──HTTP NDJSON──► produce ──► Kafka ──► consume ──► sinks
//!                                                                       ▲                  (Parquet,
//!                                               admin (topics) ─────────┘                   console)
//! ```
//!
//! * [`settings`]: the one config layer (defaults < file < `FACTORYPAL__*` env < flags).
//! * [`cli`]: clap definitions; [`main`](../factorypal/index.html) only parses and dispatches.
//! * [`api`]: `serve-api`, the stand-in for the machines; knows nothing of Kafka.
//! * [`kafka`]: client building with timeouts, topic-name rules, metadata.
//! * [`admin`]: `admin` topic management on top of [`kafka`].
//! * [`produce`]: API streams → Kafka, keyed like the Java client, resumable.
//! * [`consume`]: Kafka → Arrow micro-batches → [`sink`]s (Parquet, console), checkpointed.
//! * [`run`]: all of it in one process (`factorypal run`).
//! * [`status`]: live counters and offsets, served by `--status-bind` as a page, JSON and
//!   Prometheus metrics.
//! * [`http`]: the accept loop and responses both HTTP servers (API, status) share.
//! * [`backoff`]: retry timing (exponential, jittered, with a deadline).
//! * [`json`]: JSON compaction shared by the API and the producer.
//! * [`excerpt`]: quoting untrusted values in messages, cut to a bounded length.
//! * [`gen_data`]: deterministic sample data with planted, documented correlations.
//! * [`shutdown`]: SIGINT/SIGTERM → a cancellation token.

pub mod admin;
pub mod api;
mod backoff;
pub mod cli;
pub mod consume;
mod durable;
mod excerpt;
pub mod failure;
pub mod gen_data;
mod http;
pub mod json;
pub mod kafka;
pub mod produce;
pub mod run;
pub mod settings;
pub mod shutdown;
mod sink;
pub mod status;

/// The connection limits both HTTP servers take (tests build servers with small ones).
pub use http::Limits;
