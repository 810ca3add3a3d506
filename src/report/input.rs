//! Finding a topic's committed rows and reading the columns the report needs.
//!
//! `INPUT/TOPIC` is read as a Delta table when it has a `_delta_log/` (or the input is
//! `s3://`): the table's current snapshot. Otherwise it is the Parquet sink's directory, of
//! which only the files a checkpoint counts as committed are read
//! ([`crate::consume::committed_files`]). Files are read one at a time, in a fixed order, on
//! the calling (blocking) thread; a Delta file's bytes come through delta-rs' object store.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use bytes::Bytes;
use deltalake::logstore::ObjectStoreRef;
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::logstore::object_store::path::Path as ObjectPath;
use futures::TryStreamExt as _;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::ChunkReader;

use super::ReportError;
use crate::consume::{checkpoint_root, committed_files};
use crate::lake::TableLocation;
use crate::settings::{ConsumerSettings, StorageSettings};

/// Rows decoded at a time.
const READ_BATCH_ROWS: usize = 64 * 1024;

/// One topic's data, located.
pub struct TopicData {
    pub topic: String,
    /// Where it was found and what was read, for the report's summary.
    pub description: String,
    files: DataFiles,
}

enum DataFiles {
    Local(Vec<PathBuf>),
    Store {
        store: ObjectStoreRef,
        paths: Vec<ObjectPath>,
    },
}

impl TopicData {
    /// Finds `topic` under `input` (the consumer's output root).
    pub async fn locate(
        input: &Path,
        topic: &str,
        consumer: &ConsumerSettings,
        storage: &StorageSettings,
    ) -> Result<Self, ReportError> {
        let dir = input.join(topic);
        if crate::lake::is_remote(input) || dir.join("_delta_log").is_dir() {
            return Self::delta(input, topic, storage).await;
        }
        if !dir.is_dir() {
            return Err(ReportError::MissingTopic {
                topic: topic.to_string(),
                path: dir.display().to_string(),
                topic_key: "report.workorder_topic",
            });
        }
        let mut consumer = consumer.clone();
        consumer.output = input.to_path_buf();
        let root = checkpoint_root(&consumer, topic);
        let found = committed_files(&dir, &root).map_err(|source| ReportError::Checkpoint {
            topic: topic.to_string(),
            source,
        })?;
        if found.checkpoints == 0 && found.uncommitted > 0 {
            return Err(ReportError::NoCheckpoint {
                topic: topic.to_string(),
                files: found.uncommitted,
                dir: dir.display().to_string(),
                checkpoint: root.display().to_string(),
            });
        }
        let mut description = format!(
            "{} (Parquet, {} committed file{})",
            dir.display(),
            found.files.len(),
            plural(found.files.len())
        );
        if found.uncommitted > 0 {
            description.push_str(&format!(
                "; {} file{} of batches not yet committed left out",
                found.uncommitted,
                plural(found.uncommitted)
            ));
        }
        Ok(Self {
            topic: topic.to_string(),
            description,
            files: DataFiles::Local(found.files),
        })
    }

    /// The table's current snapshot: its active files.
    async fn delta(
        input: &Path,
        topic: &str,
        storage: &StorageSettings,
    ) -> Result<Self, ReportError> {
        let lake = |source| ReportError::Lake {
            topic: topic.to_string(),
            source,
        };
        let location = TableLocation::existing(input, topic, storage).map_err(lake)?;
        let Some(table) = location.open().await.map_err(lake)? else {
            return Err(ReportError::MissingTopic {
                topic: topic.to_string(),
                path: location.display(),
                topic_key: "report.workorder_topic",
            });
        };
        let views: Vec<_> = table
            .get_active_add_actions_by_partitions(&[])
            .try_collect()
            .await
            .map_err(|e| lake(location.error(e)))?;
        if let Some(view) = views
            .iter()
            .find(|v| v.deletion_vector_descriptor().is_some())
        {
            return Err(ReportError::DeletionVectors {
                topic: topic.to_string(),
                table: location.display(),
                file: view.path().to_string(),
            });
        }
        let mut paths: Vec<ObjectPath> = views.iter().map(|v| v.object_store_path()).collect();
        paths.sort();
        let version = table.version().unwrap_or_default();
        Ok(Self {
            topic: topic.to_string(),
            description: format!(
                "{} (Delta table, version {version}, {} file{})",
                location.display(),
                paths.len(),
                plural(paths.len())
            ),
            files: DataFiles::Store {
                store: table.object_store(),
                paths,
            },
        })
    }

    /// Reads `columns` of every row, batch by batch, handing each to `each` with the columns
    /// in the order asked. Blocking: call it off the async workers; `runtime` drives the
    /// object store for Delta tables.
    pub fn read(
        &self,
        columns: &[&str],
        runtime: &tokio::runtime::Handle,
        mut each: impl FnMut(&RecordBatch) -> Result<(), ReportError>,
    ) -> Result<(), ReportError> {
        match &self.files {
            DataFiles::Local(files) => {
                for path in files {
                    let file = std::fs::File::open(path)
                        .map_err(|e| self.file_error(path.display(), e))?;
                    self.read_file(&path.display().to_string(), file, columns, &mut each)?;
                }
            }
            DataFiles::Store { store, paths } => {
                for path in paths {
                    let bytes = runtime
                        .block_on(fetch(store, path))
                        .map_err(|e| self.file_error(path, e))?;
                    self.read_file(path.as_ref(), bytes, columns, &mut each)?;
                }
            }
        }
        Ok(())
    }

    fn read_file<R: ChunkReader + 'static>(
        &self,
        name: &str,
        reader: R,
        columns: &[&str],
        each: &mut impl FnMut(&RecordBatch) -> Result<(), ReportError>,
    ) -> Result<(), ReportError> {
        let bad = |reason: String| ReportError::File {
            topic: self.topic.clone(),
            file: name.to_string(),
            reason,
        };
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(reader).map_err(|e| bad(e.to_string()))?;
        let schema = builder.schema().clone();
        if let Some(missing) = columns.iter().find(|c| schema.field_with_name(c).is_err()) {
            let present: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(ReportError::MissingColumn {
                topic: self.topic.clone(),
                file: name.to_string(),
                column: missing.to_string(),
                present: present.join(", "),
            });
        }
        let mask = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
        let reader = builder
            .with_projection(mask)
            .with_batch_size(READ_BATCH_ROWS)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(e.to_string()))?;
            let ordered = batch
                .project(&column_order(&batch, columns))
                .map_err(|e| bad(e.to_string()))?;
            each(&ordered)?;
        }
        Ok(())
    }

    fn file_error(&self, file: impl std::fmt::Display, e: impl std::fmt::Display) -> ReportError {
        ReportError::File {
            topic: self.topic.clone(),
            file: file.to_string(),
            reason: e.to_string(),
        }
    }
}

/// The indices of `columns` in `batch`, in the order asked (the projection keeps file order).
fn column_order(batch: &RecordBatch, columns: &[&str]) -> Vec<usize> {
    columns
        .iter()
        .filter_map(|c| batch.schema().index_of(c).ok())
        .collect()
}

async fn fetch(
    store: &ObjectStoreRef,
    path: &ObjectPath,
) -> Result<Bytes, deltalake::logstore::object_store::Error> {
    store.get(path).await?.bytes().await
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
