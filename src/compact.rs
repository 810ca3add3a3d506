//! `compact`: the small-files answer for Delta tables. The consumer writes one file per
//! micro-batch (and per day partition), up to 8,640 a day per topic at a 10 s trigger; this
//! rewrites them into files near `consumer.compact_target_file_size`, then vacuums.
//!
//! # Compaction
//! Per table (`OUTPUT/TOPIC`; a topic without a table yet is skipped), per partition (the
//! `date` values, or the whole table), the active files smaller than the target are
//! bin-packed in order of modification time into groups of at most the target's total size;
//! a group of one file is left alone. Each group is read file by file (one file's bytes, each
//! smaller than the target, decoded a batch at a time) and written as one new file by delta-rs' `RecordBatchWriter`, which streams it to
//! the store. Groups are committed [`COMMIT_GROUPS`] at a time (so a huge first compaction
//! keeps its progress), each commit an `OPTIMIZE` holding `remove` actions for the old files
//! and `add` actions for the new ones, all with `dataChange = false`: readers see the same
//! rows before and after, and streaming readers of the table skip the rewrite.
//!
//! # Safe while the consumer appends
//! The consumer's commits are blind appends with `txn` actions of its own app ids. delta-rs'
//! conflict checker (without datafusion) lets either side commit on top of the other:
//! appends do not conflict with an operation that reads no predicate, the consumer removes
//! nothing, and `dataChange = false` removes do not conflict with the consumer's reads. So a
//! commit that lost the race is retried on the newer version ([`COMMIT_RETRIES`]).
//!
//! The same checker ignores `dataChange = false` removes entirely, so two compactions of the
//! same files would both commit and every row would be there twice. Two guards prevent that:
//! each compact commit carries a `txn` action of the app id [`COMPACT_APP_ID`], which delta-rs
//! checks against every commit since the version the files were chosen from (two compacts
//! overlapping in time: the later commit fails with a conflict, nothing lost, its new files
//! left for vacuum); and before committing, the files to remove must all still be active in
//! the newest version (which also stops us after another tool's OPTIMIZE).
//!
//! # Vacuum
//! Then `vacuum` in two steps:
//! * removed files (tombstones) older than `consumer.vacuum_retention` (`0s` allowed);
//! * files no version references (written by a consumer attempt that crashed before its
//!   commit) only once **older than the retention and at least [`ORPHAN_FLOOR`] (1 hour)**:
//!   a running consumer's batch is such a file between its write and its commit, and deleting
//!   it would lose the batch. (A batch whose commit takes more than an hour after its files
//!   are written would be at risk; the consumer's retries give up long before by default.)
//!
//! `_delta_log/` and `_bad_records/` are never touched (vacuum skips names starting with `_`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, StringArray, new_null_array};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::RecordBatch;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Remove, Transaction};
use deltalake::logstore::object_store::ObjectStoreExt as _;
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::DeltaOperation;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableError, Path as ObjectPath};
use futures::TryStreamExt as _;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio_util::sync::CancellationToken;

use crate::excerpt::Excerpt;
use crate::failure::Classify;
use crate::lake::{LakeError, TableLocation};
use crate::settings::Settings;

/// Groups rewritten per Delta commit: a bound on the work a failed commit throws away.
pub const COMMIT_GROUPS: usize = 64;
/// Tries of a commit that lost a race with non-conflicting writers (the consumer).
pub const COMMIT_RETRIES: usize = 100;
/// The app id of the `txn` action every compact commit carries (see the module doc).
pub const COMPACT_APP_ID: &str = "factorypal-compact";
/// Files no version references are deleted only once at least this old.
pub const ORPHAN_FLOOR: Duration = Duration::from_secs(3600);
/// Rows per batch read from an old file.
const READ_BATCH_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(
        "topic {} has no schema in [consumer.topics] (known: {known}); name one of those with --topics",
        Excerpt(topic)
    )]
    UnknownTopic { topic: String, known: String },
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(
        "Delta table {table}: cannot read data file {file}: {source}; the table may be damaged or the store unreachable: check the file, then run compact again"
    )]
    Read {
        table: String,
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error(
        "Delta table {table}: another compaction changed the files this one rewrote ({reason}); nothing was lost (its new files are unreferenced and vacuum removes them): run compact again"
    )]
    Conflict {
        table: String,
        reason: String,
        #[source]
        source: Option<Box<DeltaTableError>>,
    },
    #[error(
        "Delta table {table}: {step}: {source}; check that the table is reachable and writable, then run compact again"
    )]
    Delta {
        table: String,
        step: &'static str,
        #[source]
        source: Box<DeltaTableError>,
    },
    #[error("compacting {table} stopped unexpectedly: {source}")]
    Task {
        table: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl Classify for CompactError {
    fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::UnknownTopic { .. }
                | Self::Lake(LakeError::BadOutput { .. } | LakeError::SchemaMismatch { .. })
        )
    }
}

/// What to compact to, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct CompactConfig {
    pub target_file_size: u64,
    pub vacuum_retention: Duration,
}

impl CompactConfig {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            target_file_size: settings.consumer.compact_target_file_size.0,
            vacuum_retention: settings.consumer.vacuum_retention.0,
        }
    }
}

/// What compacting one table did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableReport {
    pub topic: String,
    pub files_before: usize,
    pub files_after: usize,
    /// Old files rewritten, their bytes, and the new files' bytes.
    pub files_rewritten: usize,
    pub bytes_rewritten: u64,
    pub bytes_written: u64,
    pub rows_rewritten: u64,
    pub commits: usize,
    pub files_vacuumed: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for TableReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} -> {} files; {} files ({} bytes) rewritten into {} bytes, {} rows, in {} commits; {} files vacuumed; {:.2} s",
            self.topic,
            self.files_before,
            self.files_after,
            self.files_rewritten,
            self.bytes_rewritten,
            self.bytes_written,
            self.rows_rewritten,
            self.commits,
            self.files_vacuumed,
            self.elapsed.as_secs_f64()
        )
    }
}

/// One topic's outcome: compacted, or no table there yet.
#[derive(Debug)]
pub enum TopicOutcome {
    Compacted(TableReport),
    NoTable { topic: String, table: String },
}

impl std::fmt::Display for TopicOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Compacted(report) => report.fmt(f),
            Self::NoTable { topic, table } => {
                write!(f, "{topic}: no Delta table at {table} yet, skipped")
            }
        }
    }
}

/// `factorypal compact`: every chosen topic's table, one after another, printing a line for
/// each. The first failure stops the command (the tables before it stay compacted).
pub async fn run(settings: &Settings, topics: Option<&[String]>) -> Result<(), CompactError> {
    let topics = chosen_topics(settings, topics)?;
    let config = CompactConfig::from_settings(settings);
    for topic in topics {
        let outcome = compact_topic(settings, &topic, config).await?;
        println!("{outcome}");
    }
    Ok(())
}

/// The topics named (each must have a schema), or every topic with one.
fn chosen_topics(
    settings: &Settings,
    topics: Option<&[String]>,
) -> Result<Vec<String>, CompactError> {
    let known = &settings.consumer.topics;
    let Some(topics) = topics else {
        return Ok(known.keys().cloned().collect());
    };
    for topic in topics {
        if !known.contains_key(topic) {
            return Err(CompactError::UnknownTopic {
                topic: topic.clone(),
                known: known.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
    }
    Ok(topics.to_vec())
}

/// Compacts and vacuums one topic's table on a blocking thread (Parquet decoding and encoding
/// are CPU work that must not hold a runtime worker).
pub async fn compact_topic(
    settings: &Settings,
    topic: &str,
    config: CompactConfig,
) -> Result<TopicOutcome, CompactError> {
    let location = TableLocation::for_topic(&settings.consumer.output, topic, &settings.storage)?;
    let runtime = tokio::runtime::Handle::current();
    let topic = topic.to_string();
    let table = location.display();
    tokio::task::spawn_blocking(move || {
        runtime.block_on(compact_location(&location, &topic, config))
    })
    .await
    .map_err(|source| CompactError::Task { table, source })?
}

async fn compact_location(
    location: &TableLocation,
    topic: &str,
    config: CompactConfig,
) -> Result<TopicOutcome, CompactError> {
    let started = Instant::now();
    let Some(table) = location.open().await? else {
        return Ok(TopicOutcome::NoTable {
            topic: topic.to_string(),
            table: location.display(),
        });
    };
    let mut compactor = Compactor {
        table_name: location.display(),
        table,
        config,
        report: TableReport {
            topic: topic.to_string(),
            ..TableReport::default()
        },
    };
    let files = compactor.active_files().await?;
    compactor.report.files_before = files.len();
    let groups = plan(files, config.target_file_size);
    for chunk in groups.chunks(COMMIT_GROUPS) {
        compactor.rewrite_and_commit(chunk).await?;
    }
    compactor.vacuum().await?;
    compactor.report.files_after = compactor.active_files().await?.len();
    compactor.report.elapsed = started.elapsed();
    Ok(TopicOutcome::Compacted(compactor.report))
}

/// An active data file of the table.
#[derive(Debug, Clone)]
struct DataFile {
    /// The path in the object store rooted at the table (percent-decoded).
    path: ObjectPath,
    size: u64,
    modification_time: i64,
    /// The partition values (column → value as text, or null).
    partition: BTreeMap<String, Option<String>>,
    /// The `remove` action that takes it out of the table (`dataChange = false`).
    remove: Remove,
}

/// Files of one partition rewritten into one file.
#[derive(Debug)]
struct Group {
    partition: BTreeMap<String, Option<String>>,
    files: Vec<DataFile>,
}

/// Bin-packs each partition's files smaller than `target`, oldest first, into groups of at
/// most `target` bytes in total; groups of a single file are dropped (nothing to gain).
fn plan(files: Vec<DataFile>, target: u64) -> Vec<Group> {
    let mut partitions: BTreeMap<BTreeMap<String, Option<String>>, Vec<DataFile>> = BTreeMap::new();
    for file in files.into_iter().filter(|f| f.size < target) {
        partitions
            .entry(file.partition.clone())
            .or_default()
            .push(file);
    }
    let mut groups = Vec::new();
    for (partition, mut files) in partitions {
        files.sort_by(|a, b| {
            (a.modification_time, a.path.as_ref()).cmp(&(b.modification_time, b.path.as_ref()))
        });
        let mut current: Vec<DataFile> = Vec::new();
        let mut total = 0;
        for file in files {
            if !current.is_empty() && total + file.size > target {
                groups.push(Group {
                    partition: partition.clone(),
                    files: std::mem::take(&mut current),
                });
                total = 0;
            }
            total += file.size;
            current.push(file);
        }
        groups.push(Group {
            partition,
            files: current,
        });
    }
    groups.retain(|g| g.files.len() > 1);
    groups
}

/// A path that reads the same percent-encoded or not: the `remove` action names the file as
/// delta-rs decodes it, which matches the log's `add` only for such paths. Others are left
/// out of compaction rather than risk a remove that misses its file.
fn plain_path(path: &str) -> bool {
    path.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.=/".contains(&b))
}

struct Compactor {
    table_name: String,
    table: DeltaTable,
    config: CompactConfig,
    report: TableReport,
}

impl Compactor {
    fn error(&self, step: &'static str) -> impl FnOnce(DeltaTableError) -> CompactError + '_ {
        move |source| CompactError::Delta {
            table: self.table_name.clone(),
            step,
            source: Box::new(source),
        }
    }

    /// Every active file of the loaded version that compaction may rewrite (no deletion
    /// vectors, plain paths); `files_before`/`after` count them all.
    async fn active_files(&self) -> Result<Vec<DataFile>, CompactError> {
        let views: Vec<_> = self
            .table
            .get_active_add_actions_by_partitions(&[])
            .try_collect()
            .await
            .map_err(self.error("listing the active files"))?;
        Ok(views
            .iter()
            .map(|view| {
                let path = view.path();
                let rewritable = view.deletion_vector_descriptor().is_none() && plain_path(&path);
                (
                    rewritable,
                    DataFile {
                        path: view.object_store_path(),
                        size: view.size().max(0) as u64,
                        modification_time: view.modification_time(),
                        partition: view.partition_values_map().into_iter().collect(),
                        remove: view.remove_action(false),
                    },
                )
            })
            .map(|(rewritable, file)| DataFile {
                // An unrewritable file is never a candidate: as big as the target.
                size: if rewritable { file.size } else { u64::MAX },
                ..file
            })
            .collect())
    }

    /// Rewrites `groups` and commits them as one OPTIMIZE.
    async fn rewrite_and_commit(&mut self, groups: &[Group]) -> Result<(), CompactError> {
        let mut actions = Vec::new();
        for group in groups {
            let (adds, rows) = self.rewrite(group).await?;
            self.report.rows_rewritten += rows;
            self.report.files_rewritten += group.files.len();
            for file in &group.files {
                self.report.bytes_rewritten += file.size;
                actions.push(Action::Remove(file.remove.clone()));
            }
            for mut add in adds {
                add.data_change = false;
                self.report.bytes_written += add.size.max(0) as u64;
                actions.push(Action::Add(add));
            }
        }
        let removed: Vec<&DataFile> = groups.iter().flat_map(|g| &g.files).collect();
        self.check_still_active(&removed).await?;
        self.commit(actions).await
    }

    /// Reads a group's files and writes their rows as one new file; its `add` actions and the
    /// row count.
    async fn rewrite(
        &self,
        group: &Group,
    ) -> Result<(Vec<deltalake::kernel::Add>, u64), CompactError> {
        let mut writer = RecordBatchWriter::for_table(&self.table)
            .map_err(self.error("preparing a new data file"))?
            .with_target_file_size(self.config.target_file_size);
        let store = self.table.object_store();
        let mut rows = 0;
        for file in &group.files {
            let read_error = |source| CompactError::Read {
                table: self.table_name.clone(),
                file: file.path.to_string(),
                source,
            };
            // A file to rewrite is smaller than the target, so holding its bytes stays within
            // the promise of about one target file in memory; rows are decoded batch by batch.
            let bytes = store
                .get(&file.path)
                .await
                .map_err(|e| read_error(e.into()))?
                .bytes()
                .await
                .map_err(|e| read_error(e.into()))?;
            let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .map_err(read_error)?
                .with_batch_size(READ_BATCH_ROWS)
                .build()
                .map_err(read_error)?;
            for batch in batches {
                let batch = batch.map_err(|e| read_error(e.into()))?;
                rows += batch.num_rows() as u64;
                let batch = with_partition_columns(&batch, &group.partition)
                    .map_err(|e| read_error(e.into()))?;
                writer
                    .write(batch)
                    .await
                    .map_err(self.error("writing a new data file"))?;
            }
        }
        let adds = writer
            .flush()
            .await
            .map_err(self.error("writing a new data file"))?;
        Ok((adds, rows))
    }

    /// The files about to be removed must still be in the newest version: another tool's
    /// OPTIMIZE may have rewritten them meanwhile (delta-rs' checker would not notice).
    async fn check_still_active(&self, removed: &[&DataFile]) -> Result<(), CompactError> {
        let mut newest = self.table.clone();
        newest
            .update_incremental(None)
            .await
            .map_err(self.error("reading the newest version"))?;
        let active: HashSet<ObjectPath> = newest
            .get_active_add_actions_by_partitions(&[])
            .map_ok(|view| view.object_store_path())
            .try_collect()
            .await
            .map_err(self.error("listing the active files"))?;
        match removed.iter().find(|f| !active.contains(&f.path)) {
            None => Ok(()),
            Some(gone) => Err(CompactError::Conflict {
                table: self.table_name.clone(),
                reason: format!("{} was removed by another commit", gone.path),
                source: None,
            }),
        }
    }

    async fn commit(&mut self, mut actions: Vec<Action>) -> Result<(), CompactError> {
        let now = chrono::Utc::now().timestamp_millis();
        actions.push(Action::Txn(Transaction::new_with_last_update(
            COMPACT_APP_ID,
            now,
            Some(now),
        )));
        let operation = DeltaOperation::Optimize {
            predicate: None,
            target_size: self.config.target_file_size as i64,
        };
        let snapshot = self
            .table
            .snapshot()
            .map_err(self.error("reading the table's version"))?;
        let committed = CommitBuilder::default()
            .with_actions(actions)
            .with_max_retries(COMMIT_RETRIES)
            .build(Some(snapshot), self.table.log_store(), operation)
            .await;
        let version = match committed {
            Ok(finalized) => finalized.version(),
            Err(error) => return Err(self.commit_error(error)),
        };
        self.report.commits += 1;
        // The next commit's conflict check starts at our own version.
        self.table
            .update_incremental(Some(version))
            .await
            .map_err(self.error("reading the committed version"))
    }

    fn commit_error(&self, error: DeltaTableError) -> CompactError {
        match error {
            DeltaTableError::Transaction { ref source }
                if matches!(
                    source,
                    deltalake::kernel::transaction::TransactionError::CommitConflict(_)
                ) =>
            {
                CompactError::Conflict {
                    table: self.table_name.clone(),
                    reason: source.to_string(),
                    source: Some(Box::new(error)),
                }
            }
            error => CompactError::Delta {
                table: self.table_name.clone(),
                step: "committing the rewritten files",
                source: Box::new(error),
            },
        }
    }

    /// Tombstones older than the retention; then, only when there are any, untracked files
    /// older than max(retention, [`ORPHAN_FLOOR`]) (see the module doc).
    async fn vacuum(&mut self) -> Result<(), CompactError> {
        let retention = self.config.vacuum_retention;
        let tombstones = self.vacuum_once(retention, VacuumMode::Lite, false).await?;
        let floor = retention.max(ORPHAN_FLOOR);
        let candidates = self.vacuum_once(floor, VacuumMode::Full, true).await?;
        let orphans = candidates.difference(&tombstones).count();
        let mut deleted = tombstones.clone();
        if orphans > 0 {
            deleted.extend(self.vacuum_once(floor, VacuumMode::Full, false).await?);
        }
        self.report.files_vacuumed = deleted.len();
        Ok(())
    }

    /// One vacuum pass; the paths it deleted (or would, on a dry run).
    async fn vacuum_once(
        &mut self,
        retention: Duration,
        mode: VacuumMode,
        dry_run: bool,
    ) -> Result<HashSet<String>, CompactError> {
        let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
        self.table
            .update_incremental(None)
            .await
            .map_err(self.error("reading the newest version"))?;
        let (table, metrics) = self
            .table
            .clone()
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(mode)
            .with_dry_run(dry_run)
            .await
            .map_err(self.error("vacuuming"))?;
        self.table = table;
        Ok(metrics.files_deleted.into_iter().collect())
    }
}

/// `batch` with a constant column per partition column (the file holds none): the writer
/// needs them to place the rows; it casts the text to the column's type.
fn with_partition_columns(
    batch: &RecordBatch,
    partition: &BTreeMap<String, Option<String>>,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut fields: Vec<Arc<Field>> = batch.schema().fields().iter().cloned().collect();
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    for (name, value) in partition {
        if batch.column_by_name(name).is_some() {
            continue;
        }
        let rows = batch.num_rows();
        let column: ArrayRef = match value {
            Some(text) => Arc::new(StringArray::from(vec![text.as_str(); rows])),
            None => new_null_array(&arrow::datatypes::DataType::Utf8, rows),
        };
        fields.push(Arc::new(Field::new(
            name,
            arrow::datatypes::DataType::Utf8,
            true,
        )));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// `run`'s schedule: compacts every topic's table each `every` until `stop`. A failure is
/// logged and counted, and the next round tries again; it never stops the pipeline.
pub async fn every(settings: Settings, every: Duration, stop: CancellationToken) {
    let config = CompactConfig::from_settings(&settings);
    let mut failures: u64 = 0;
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        for topic in settings.consumer.topics.keys() {
            match compact_topic(&settings, topic, config).await {
                Ok(outcome) => tracing::info!(%outcome, "scheduled compaction"),
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, failures, "scheduled compaction failed; trying again at the next interval");
                }
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, size: u64, time: i64, day: &str) -> DataFile {
        DataFile {
            path: ObjectPath::from(format!("date={day}/{name}")),
            size,
            modification_time: time,
            partition: [("date".to_string(), Some(day.to_string()))].into(),
            remove: Remove {
                path: name.into(),
                data_change: false,
                deletion_timestamp: None,
                extended_file_metadata: None,
                partition_values: None,
                size: None,
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            },
        }
    }

    fn names(groups: &[Group]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                g.files
                    .iter()
                    .map(|f| f.path.filename().unwrap().to_string())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn small_files_are_packed_per_partition_in_time_order_up_to_the_target() {
        let files = vec![
            file("c", 40, 3, "d1"),
            file("a", 40, 1, "d1"),
            file("b", 40, 2, "d1"),
            file("big", 100, 0, "d1"),
            file("x", 30, 1, "d2"),
            file("y", 30, 2, "d2"),
            file("lonely", 10, 1, "d3"),
        ];
        let groups = plan(files, 100);
        assert_eq!(
            names(&groups),
            [vec!["a", "b"], vec!["x", "y"]],
            "c alone and lonely alone stay; big is at the target"
        );
    }

    #[test]
    fn only_plain_paths_are_rewritten() {
        assert!(plain_path("date=2021-06-22/part-00000-abc.snappy.parquet"));
        assert!(!plain_path("date=2021-06-22 10%3A00/part.parquet"));
    }
}
