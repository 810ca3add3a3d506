//! Bad records: payloads a topic's schema cannot decode, kept with their partition, offset and
//! reason instead of being dropped. Where they go depends on the sink's output:
//! `OUTPUT/TOPIC/_bad_records/batch-<batch><suffix>.jsonl`, one file per batch (a directory
//! for the Parquet sink; objects beside the Delta table, local or on S3, which Delta readers
//! ignore because the name starts with `_`), or the log for the console sink.
//!
//! A batch's file is written before the batch commits and removed when the batch starts
//! again, so a replay replaces it: every bad record is kept once.

use std::path::{Path, PathBuf};

use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::{DeltaTable, ObjectStoreError, Path as ObjectPath};
use serde::Serialize;
use tokio::runtime::Handle;

use crate::lake::TableLocation;
use crate::sink::SinkError;

/// Bad records logged per batch when there is no `_bad_records/` place (console sink).
const BAD_RECORDS_LOGGED: usize = 10;
/// The directory (or object prefix) beside a topic's output.
pub const BAD_RECORDS_DIR: &str = "_bad_records";

/// A bad record as written to `_bad_records/`. The payload is kept exactly, once: as text
/// when it is UTF-8, else as `payload_base64`; neither when the record has no value. The
/// reason quotes at most an excerpt of it.
#[derive(Debug, Clone, Serialize)]
pub struct BadRecordEntry {
    topic: String,
    partition: i32,
    offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    reason: String,
}

impl BadRecordEntry {
    pub fn new(
        topic: &str,
        partition: i32,
        offset: i64,
        value: Option<&[u8]>,
        reason: String,
    ) -> Self {
        use base64::Engine as _;
        let (payload, payload_base64) = match value {
            None => (None, None),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => (Some(text.to_string()), None),
                Err(_) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
                ),
            },
        };
        Self {
            topic: topic.to_string(),
            partition,
            offset,
            payload,
            payload_base64,
            reason,
        }
    }
}

/// Where a topic's bad records go.
pub enum BadRecordsPlace {
    /// The first few of each batch are logged (console sink: nothing is kept anyway).
    Log,
    /// Files in a local directory (Parquet sink).
    Dir(PathBuf),
    /// Objects under `_bad_records/` in a Delta table's location, local or remote.
    Store {
        store: deltalake::logstore::ObjectStoreRef,
        runtime: Handle,
        /// Where that is, for messages.
        display: String,
    },
}

impl BadRecordsPlace {
    /// Beside a Delta table: the table's own object store (rooted at the table).
    pub fn in_table(location: &TableLocation, table: &DeltaTable, runtime: Handle) -> Self {
        Self::Store {
            store: table.object_store(),
            runtime,
            display: format!(
                "{}/{BAD_RECORDS_DIR}",
                location.display().trim_end_matches('/')
            ),
        }
    }

    /// The local directory, when that is where they go.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Self::Dir(dir) => Some(dir),
            _ => None,
        }
    }

    /// `batch-<batch><suffix>.jsonl`.
    fn file_name(batch: u64, suffix: &str) -> String {
        format!("batch-{batch:08}{suffix}.jsonl")
    }

    /// Removes what an earlier attempt of `batch` kept.
    pub fn clear(&self, batch: u64, suffix: &str) -> Result<(), SinkError> {
        let name = Self::file_name(batch, suffix);
        match self {
            Self::Log => Ok(()),
            Self::Dir(dir) => {
                let path = dir.join(&name);
                match std::fs::remove_file(&path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(SinkError::Io {
                        path: path.display().to_string(),
                        source,
                    }),
                }
            }
            // Left to `keep`: beside a Delta table, a retry may find its batch already
            // committed (the answer to the commit was lost), and that batch's file must stay.
            Self::Store { .. } => Ok(()),
        }
    }

    /// Deletes an object if it is there.
    fn delete_object(
        store: &deltalake::logstore::ObjectStoreRef,
        runtime: &Handle,
        display: &str,
        name: &str,
    ) -> Result<(), SinkError> {
        let path = ObjectPath::from(format!("{BAD_RECORDS_DIR}/{name}"));
        match runtime.block_on(store.delete(&path)) {
            Ok(()) | Err(ObjectStoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(display, name, e)),
        }
    }

    /// Keeps a batch's bad records, whole or not at all. Beside a Delta table this replaces
    /// (or, with none, removes) what an uncommitted earlier attempt of the batch kept: the
    /// same batch tried again reads the same records, so a committed batch's file is only
    /// ever rewritten with the same content.
    pub fn keep(&self, batch: u64, suffix: &str, bad: &[BadRecordEntry]) -> Result<(), SinkError> {
        let name = Self::file_name(batch, suffix);
        if bad.is_empty() {
            return match self {
                Self::Store {
                    store,
                    runtime,
                    display,
                } => Self::delete_object(store, runtime, display, &name),
                _ => Ok(()),
            };
        }
        let mut text = Vec::new();
        for b in bad {
            serde_json::to_writer(&mut text, b).expect("bad record entries serialize");
            text.push(b'\n');
        }
        match self {
            Self::Log => {
                for b in bad.iter().take(BAD_RECORDS_LOGGED) {
                    tracing::warn!(topic = %b.topic, partition = b.partition, offset = b.offset, reason = %b.reason, "bad record skipped");
                }
                Ok(())
            }
            Self::Dir(dir) => {
                let path = dir.join(&name);
                std::fs::create_dir_all(dir)
                    .and_then(|()| crate::durable::write_file(&path, &text))
                    .map_err(|source| SinkError::Io {
                        path: path.display().to_string(),
                        source,
                    })
            }
            Self::Store {
                store,
                runtime,
                display,
            } => {
                // One PUT: the object appears whole or not at all.
                let path = ObjectPath::from(format!("{BAD_RECORDS_DIR}/{name}"));
                runtime
                    .block_on(store.put(&path, text.into()))
                    .map(|_| ())
                    .map_err(|e| store_error(display, &name, e))
            }
        }
    }
}

fn store_error(display: &str, name: &str, error: ObjectStoreError) -> SinkError {
    SinkError::Io {
        path: format!("{display}/{name}"),
        source: std::io::Error::other(error),
    }
}
