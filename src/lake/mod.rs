//! Delta Lake tables (delta-rs): where a topic's table lives (a directory, or `s3://` with
//! the `[storage]` settings), opening it, creating it from the topic's schema on first use,
//! and the application transactions (`txn` actions) that make a table its own checkpoint.
//!
//! Used by the Delta sink ([`crate::sink::DeltaSink`]) and by `compact`. Everything here is
//! async (delta-rs and object_store are); callers on a file thread drive it with
//! `Handle::block_on`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Once;

use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{DataType, PrimitiveType, StructField};
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ObjectStoreError};
use indexmap::IndexMap;
use url::Url;

use crate::settings::{ColumnType, StorageSettings};
pub use crate::sink::day::DATE_COLUMN;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error(
        "output {output:?} is neither a directory nor an s3://BUCKET/PREFIX address ({reason}); set consumer.output (--output) to one"
    )]
    BadOutput { output: String, reason: String },
    #[error("cannot create the table directory {path}: {source}")]
    Directory {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "Delta table {table}: {source}; check that the location is reachable and writable{}",
        remote_hint(.table)
    )]
    Delta {
        table: String,
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error(
        "Delta table {table} has columns {found} but topic {topic}'s schema (and partition_by_day) gives {expected}; write the topic to a new output (--output), or change [consumer.topics.{topic}] back"
    )]
    SchemaMismatch {
        table: String,
        topic: String,
        found: String,
        expected: String,
    },
}

impl LakeError {
    /// A lost connection or a store that answered with an error: worth another try. A table
    /// with the wrong columns or an address that cannot work is not.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Delta { source, .. } => is_retriable(source),
            Self::Directory { .. } => true,
            Self::BadOutput { .. } | Self::SchemaMismatch { .. } => false,
        }
    }
}

/// Whether a delta-rs error may pass with time: storage that did not answer or failed,
/// a commit that lost a race more often than delta-rs retried, a log read that broke off.
/// A store that refused us (credentials, a missing bucket, a bad path), found anywhere in
/// the error's chain, does not change its mind; nor does a table that is not what we expect.
pub fn is_retriable(error: &DeltaTableError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = next {
        if let Some(store) = cause.downcast_ref::<ObjectStoreError>() {
            return !matches!(
                store,
                ObjectStoreError::NotFound { .. }
                    | ObjectStoreError::PermissionDenied { .. }
                    | ObjectStoreError::Unauthenticated { .. }
                    | ObjectStoreError::InvalidPath { .. }
                    | ObjectStoreError::NotSupported { .. }
                    | ObjectStoreError::NotImplemented { .. }
                    | ObjectStoreError::UnknownConfigurationKey { .. }
            );
        }
        next = cause.source();
    }
    matches!(
        error,
        DeltaTableError::Io { .. }
            | DeltaTableError::Transaction { .. }
            | DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::KernelError(_)
            | DeltaTableError::Kernel { .. }
            | DeltaTableError::Generic(_)
            | DeltaTableError::GenericError { .. }
    )
}

fn remote_hint(table: &str) -> &'static str {
    if table.starts_with("s3://") {
        " (the [storage] settings and the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment)"
    } else {
        ""
    }
}

/// Where one topic's table lives and how to reach it.
#[derive(Debug, Clone)]
pub struct TableLocation {
    pub url: Url,
    /// delta-rs / object_store options: the endpoint, region and HTTP permission. Credentials
    /// are read from the environment by object_store itself, never copied here.
    pub options: HashMap<String, String>,
}

impl TableLocation {
    /// `OUTPUT/TOPIC`: a local directory (created), or `s3://BUCKET/PREFIX/TOPIC`.
    pub fn for_topic(
        output: &Path,
        topic: &str,
        storage: &StorageSettings,
    ) -> Result<Self, LakeError> {
        if !is_remote(output) {
            let dir = output.join(topic);
            std::fs::create_dir_all(&dir).map_err(|source| LakeError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        Self::existing(output, topic, storage)
    }

    /// Like [`Self::for_topic`], creating nothing: for readers.
    pub fn existing(
        output: &Path,
        topic: &str,
        storage: &StorageSettings,
    ) -> Result<Self, LakeError> {
        let text = output.to_string_lossy();
        let bad = |reason: String| LakeError::BadOutput {
            output: text.to_string(),
            reason,
        };
        let url = if is_remote(output) {
            register_object_stores();
            let base = Url::parse(&format!("{}/", text.trim_end_matches('/')))
                .map_err(|e| bad(e.to_string()))?;
            if base.scheme() != "s3" || base.host_str().is_none_or(str::is_empty) {
                return Err(bad("only s3://BUCKET/PREFIX is supported".into()));
            }
            base.join(&format!("{topic}/"))
                .map_err(|e| bad(e.to_string()))?
        } else {
            let dir = std::path::absolute(output.join(topic)).map_err(|e| bad(e.to_string()))?;
            Url::from_directory_path(&dir).map_err(|()| bad("not an absolute path".into()))?
        };
        Ok(Self {
            url,
            options: storage_options(storage),
        })
    }

    /// The address as users write it: a path for local tables, the URL otherwise.
    pub fn display(&self) -> String {
        match self.url.to_file_path() {
            Ok(path) if self.url.scheme() == "file" => path.display().to_string(),
            _ => self.url.to_string(),
        }
    }

    pub fn error(&self, source: DeltaTableError) -> LakeError {
        LakeError::Delta {
            table: self.display(),
            source: Box::new(source),
        }
    }

    /// The table, loaded at its newest version, or `None` when there is no table yet.
    pub async fn open(&self) -> Result<Option<DeltaTable>, LakeError> {
        let builder = DeltaTableBuilder::from_url(self.url.clone())
            .map_err(|e| self.error(e))?
            .with_storage_options(self.options.clone());
        let mut table = builder.build().map_err(|e| self.error(e))?;
        // Asked first: loading a location without a log has delta-rs log an error.
        if !table
            .verify_deltatable_existence()
            .await
            .map_err(|e| self.error(e))?
        {
            return Ok(None);
        }
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Deletes the table and everything in its location (`--overwrite`): data files, log,
    /// `_bad_records/`. Nothing there is left for a reader to trip over.
    pub async fn delete_table(&self) -> Result<(), LakeError> {
        use futures::{StreamExt as _, TryStreamExt as _};
        if let Ok(dir) = self.url.to_file_path()
            && self.url.scheme() == "file"
        {
            return match std::fs::remove_dir_all(&dir) {
                Ok(()) => std::fs::create_dir_all(&dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(&dir),
                Err(e) => Err(e),
            }
            .map_err(|source| LakeError::Directory {
                path: dir.display().to_string(),
                source,
            });
        }
        let table = DeltaTableBuilder::from_url(self.url.clone())
            .map_err(|e| self.error(e))?
            .with_storage_options(self.options.clone())
            .build()
            .map_err(|e| self.error(e))?;
        let store = table.object_store();
        let paths = store.list(None).map_ok(|meta| meta.location).boxed();
        store
            .delete_stream(paths)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.error(e.into()))?;
        tracing::info!(table = %self.display(), "deleted the table (--overwrite)");
        Ok(())
    }

    /// The topic's table, created with the topic's columns (and the `date` partition column
    /// when partitioned by day) if it does not exist yet. An existing table must have exactly
    /// those columns: appending other ones would break every reader.
    pub async fn open_or_create(
        &self,
        topic: &str,
        schema: &IndexMap<String, ColumnType>,
        partition_by_day: bool,
    ) -> Result<DeltaTable, LakeError> {
        let expected = table_columns(schema, partition_by_day);
        let table = match self.open().await? {
            Some(table) => table,
            None => self.create(topic, &expected, partition_by_day).await?,
        };
        self.check_columns(&table, topic, &expected, partition_by_day)?;
        Ok(table)
    }

    async fn create(
        &self,
        topic: &str,
        columns: &[StructField],
        partition_by_day: bool,
    ) -> Result<DeltaTable, LakeError> {
        let partitions: Vec<String> = if partition_by_day {
            vec![DATE_COLUMN.to_string()]
        } else {
            Vec::new()
        };
        let created = DeltaTableBuilder::from_url(self.url.clone())
            .map_err(|e| self.error(e))?
            .with_storage_options(self.options.clone())
            .build()
            .map_err(|e| self.error(e))?
            .create()
            .with_table_name(topic)
            .with_comment(format!("Kafka topic {topic}, written by factorypal"))
            .with_columns(columns.iter().cloned())
            .with_partition_columns(partitions)
            .with_save_mode(SaveMode::Ignore)
            // Another instance may create it at the same moment: then theirs is used. Without
            // this, delta-rs would retry ours as version 1 over theirs, a second table id.
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        if let Err(error) = created {
            // Lost the race, or failed: if a table is there now, it is the one to use.
            if let Some(table) = self.open().await? {
                return Ok(table);
            }
            return Err(self.error(error));
        }
        tracing::info!(table = %self.display(), "created Delta table");
        self.open().await?.ok_or_else(|| {
            self.error(DeltaTableError::NotATable(
                "the table just created cannot be loaded".into(),
            ))
        })
    }

    fn check_columns(
        &self,
        table: &DeltaTable,
        topic: &str,
        expected: &[StructField],
        partition_by_day: bool,
    ) -> Result<(), LakeError> {
        let snapshot = table.snapshot().map_err(|e| self.error(e))?;
        let schema = snapshot.schema();
        let found: Vec<StructField> = schema.fields().cloned().collect();
        let partitions = snapshot.metadata().partition_columns().to_vec();
        let wanted_partitions: Vec<String> = if partition_by_day {
            vec![DATE_COLUMN.to_string()]
        } else {
            Vec::new()
        };
        let same = found.len() == expected.len()
            && found
                .iter()
                .zip(expected)
                .all(|(f, e)| f.name() == e.name() && f.data_type() == e.data_type())
            && partitions == wanted_partitions;
        if same {
            return Ok(());
        }
        let describe = |fields: &[StructField], partitions: &[String]| {
            let columns: Vec<String> = fields
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect();
            format!(
                "({}) partitioned by ({})",
                columns.join(", "),
                partitions.join(", ")
            )
        };
        Err(LakeError::SchemaMismatch {
            table: self.display(),
            topic: topic.to_string(),
            found: describe(&found, &partitions),
            expected: describe(expected, &wanted_partitions),
        })
    }
}

/// Whether `output` names object storage rather than a directory.
pub fn is_remote(output: &Path) -> bool {
    output.to_string_lossy().contains("://")
}

/// The options delta-rs passes to object_store for `[storage]`.
fn storage_options(storage: &StorageSettings) -> HashMap<String, String> {
    let mut options = HashMap::new();
    if !storage.endpoint.is_empty() {
        options.insert("AWS_ENDPOINT_URL".into(), storage.endpoint.clone());
    }
    if !storage.region.is_empty() {
        options.insert("AWS_REGION".into(), storage.region.clone());
    } else if std::env::var_os("AWS_REGION").is_none()
        && std::env::var_os("AWS_DEFAULT_REGION").is_none()
    {
        options.insert("AWS_REGION".into(), "us-east-1".into());
    }
    if storage.allow_http {
        options.insert("AWS_ALLOW_HTTP".into(), "true".into());
    }
    options
}

/// delta-rs knows `s3://` only once its S3 handlers are registered (once per process).
fn register_object_stores() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| deltalake::aws::register_handlers(None));
}

/// The table's columns: the topic's schema in order (all nullable: a field missing from a
/// record is a null), then `date` when partitioned by day.
pub fn table_columns(
    schema: &IndexMap<String, ColumnType>,
    partition_by_day: bool,
) -> Vec<StructField> {
    let mut columns: Vec<StructField> = schema
        .iter()
        .map(|(name, column)| StructField::new(name.clone(), delta_type(*column), true))
        .collect();
    if partition_by_day {
        columns.push(StructField::new(
            DATE_COLUMN,
            DataType::Primitive(PrimitiveType::String),
            true,
        ));
    }
    columns
}

/// The Delta type of a schema column; timestamps are Delta's `timestamp` (microseconds, UTC).
fn delta_type(column: ColumnType) -> DataType {
    DataType::Primitive(match column {
        ColumnType::Bool => PrimitiveType::Boolean,
        ColumnType::Int32 => PrimitiveType::Integer,
        ColumnType::Int64 => PrimitiveType::Long,
        ColumnType::Float32 => PrimitiveType::Float,
        ColumnType::Float64 => PrimitiveType::Double,
        ColumnType::String => PrimitiveType::String,
        ColumnType::Timestamp => PrimitiveType::Timestamp,
    })
}
