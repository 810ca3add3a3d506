//! The Parquet sink: `OUTPUT/TOPIC/part-<batch>-<n>[-<instance>].parquet`, one file per chunk of
//! at most `max_records_per_file` rows. Each file is written under a hidden temporary name,
//! synced, and renamed into place, so a name ending in `.parquet` is always a whole file.
//!
//! With `partition_by_day` each chunk is split by the UTC day of that column
//! ([`super::day`]) and each day's rows go to a Hive directory,
//! `OUTPUT/TOPIC/date=YYYY-MM-DD/part-<batch>-<n>[-<instance>].parquet` (rows without a time
//! under `date=__HIVE_DEFAULT_PARTITION__`): a file per chunk per day, without a `date`
//! column (readers take it from the path). Finding, replacing and removing files looks in the
//! topic directory and in every `date=` directory whatever the setting, so output written
//! before the setting changed is still found.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::day::{DATE_COLUMN, split_by_day};
use super::{BatchDone, ExistingFile, Sink, SinkError};
use crate::settings::ParquetCompression;

pub struct ParquetSink {
    dir: PathBuf,
    /// `""` for a consumer of all partitions, `-i0of2` and the like for one instance of several,
    /// so instances writing into one directory never collide.
    suffix: String,
    properties: WriterProperties,
    /// The timestamp column whose UTC day picks each row's `date=` directory; `None`: flat.
    day_column: Option<String>,
    batch: u64,
    /// What this batch wrote, relative to `dir` (`part-....parquet`, `date=.../part-....parquet`).
    written: Vec<String>,
    /// Day directories whose entries this batch changed (a file renamed in or removed),
    /// synced in `commit` (with the topic directory, always).
    changed_dirs: BTreeSet<PathBuf>,
}

/// One data file found in the output.
struct DataFile {
    path: PathBuf,
    name: String,
}

impl ParquetSink {
    pub fn new(
        dir: PathBuf,
        instance_suffix: String,
        compression: ParquetCompression,
    ) -> Result<Self, SinkError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let sink = Self {
            dir,
            suffix: instance_suffix,
            properties: writer_properties(compression),
            day_column: None,
            batch: 0,
            written: Vec::new(),
            changed_dirs: BTreeSet::new(),
        };
        sink.remove_temporaries()?;
        Ok(sink)
    }

    /// Partitions the output by the UTC day of timestamp column `column` (`partition_by_day`;
    /// `None` keeps one flat directory). The column is checked when the settings load.
    pub fn with_partition_by_day(mut self, column: Option<String>) -> Self {
        self.day_column = column;
        self
    }

    fn prefix(batch: u64) -> String {
        format!("part-{batch:08}-")
    }

    /// Our files of `batch`: `part-<batch>-<nnnn><suffix>.parquet`.
    fn is_ours(&self, name: &str, batch: u64) -> bool {
        parse_name(name).is_some_and(|n| n.batch == batch && n.suffix == self.suffix)
    }

    /// The directories data files live in: the topic directory, then its `date=` directories
    /// (sorted). `_checkpoint/`, `_bad_records/` and hidden entries are not among them.
    fn data_dirs(&self) -> Result<Vec<PathBuf>, SinkError> {
        let mut days = Vec::new();
        let day_prefix = format!("{DATE_COLUMN}=");
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(&day_prefix)
                && entry.file_type().map_err(io(&entry.path()))?.is_dir()
            {
                days.push(entry.path());
            }
        }
        days.sort();
        days.insert(0, self.dir.clone());
        Ok(days)
    }

    /// Every entry of every data directory (data files, temporaries, anything else), for the
    /// caller to pick from by name.
    fn entries(&self) -> Result<Vec<DataFile>, SinkError> {
        let mut found = Vec::new();
        for dir in self.data_dirs()? {
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let entry = entry.map_err(io(&dir))?;
                found.push(DataFile {
                    path: entry.path(),
                    name: entry.file_name().to_string_lossy().into_owned(),
                });
            }
        }
        Ok(found)
    }

    /// Hidden temporaries of ours left by a crash, in the topic directory and every day's.
    fn remove_temporaries(&self) -> Result<(), SinkError> {
        let ours = format!("{}.parquet.tmp", self.suffix);
        for f in self.entries()? {
            if f.name.starts_with(".part-") && f.name.ends_with(&ours) {
                std::fs::remove_file(&f.path).map_err(io(&f.path))?;
            }
        }
        Ok(())
    }

    /// The directory for one day's rows (`date=2021-06-22`), created if new.
    fn day_dir(&mut self, name: &str) -> Result<PathBuf, SinkError> {
        let dir = self.dir.join(name);
        match std::fs::create_dir(&dir) {
            // Ours from an earlier batch or attempt, or another instance's: it is there.
            // Either way `commit` syncs the topic directory, which holds its entry.
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(dir),
            Err(source) => Err(io(&dir)(source)),
        }
    }

    /// Writes `rows` as the batch's next file in `dir`; `relative` is `dir` relative to the
    /// topic directory (`None` for the topic directory itself).
    fn write_file(
        &mut self,
        dir: &Path,
        relative: Option<&str>,
        rows: &RecordBatch,
    ) -> Result<(), SinkError> {
        let name = format!(
            "{}{:04}{}.parquet",
            Self::prefix(self.batch),
            self.written.len(),
            self.suffix
        );
        let path = dir.join(&name);
        let tmp = crate::durable::temporary_for(&path);
        let encode = |e: parquet::errors::ParquetError| SinkError::Encode {
            path: tmp.display().to_string(),
            reason: e.to_string(),
        };
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let mut writer = ArrowWriter::try_new(file, rows.schema(), Some(self.properties.clone()))
            .map_err(encode)?;
        writer.write(rows).map_err(encode)?;
        let file = writer.into_inner().map_err(encode)?;
        file.sync_all().map_err(io(&tmp))?;
        // The directory is synced once per batch, in `commit`.
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        self.changed_dirs.insert(dir.to_path_buf());
        self.written.push(match relative {
            Some(sub) => format!("{sub}/{name}"),
            None => name,
        });
        Ok(())
    }
}

/// How data files are encoded: `consumer.compression`, Parquet's defaults otherwise.
pub fn writer_properties(compression: ParquetCompression) -> WriterProperties {
    let codec = match compression {
        ParquetCompression::None => Compression::UNCOMPRESSED,
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
        ParquetCompression::Lz4 => Compression::LZ4_RAW,
        ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
    };
    WriterProperties::builder().set_compression(codec).build()
}

/// The parts of a data file's name, `part-<batch>-<nnnn><suffix>.parquet`.
pub(crate) struct FileName<'a> {
    pub batch: u64,
    /// `""` for a consumer of all partitions, else `-<identity>`.
    pub suffix: &'a str,
}

pub(crate) fn parse_name(name: &str) -> Option<FileName<'_>> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (batch, rest) = rest.split_once('-')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let suffix = &rest[digits..];
    let well_formed = batch.len() >= 8
        && batch.bytes().all(|b| b.is_ascii_digit())
        && digits == 4
        && (suffix.is_empty() || suffix.starts_with('-'));
    well_formed.then_some(FileName {
        batch: batch.parse().ok()?,
        suffix,
    })
}

impl Sink for ParquetSink {
    /// Files of the same identity, and of any identity when one of the two is a consumer of
    /// all partitions (no suffix), in the topic directory and its day directories.
    /// Instances (`-i0of2`, `-p0-2`) do not overlap each other's names; overlapping partition
    /// selections running together are stopped by the checkpoint root's partition locks.
    fn existing(&self) -> Result<Vec<ExistingFile>, SinkError> {
        let mut found = Vec::new();
        for f in self.entries()? {
            let Some(parsed) = parse_name(&f.name) else {
                continue;
            };
            let own = parsed.suffix == self.suffix;
            if own || parsed.suffix.is_empty() || self.suffix.is_empty() {
                found.push(ExistingFile {
                    batch: parsed.batch,
                    own,
                    path: f.path,
                });
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    fn remove(&mut self, files: &[ExistingFile]) -> Result<(), SinkError> {
        let mut dirs = BTreeSet::from([self.dir.clone()]);
        for f in files {
            std::fs::remove_file(&f.path).map_err(io(&f.path))?;
            if let Some(parent) = f.path.parent() {
                dirs.insert(parent.to_path_buf());
            }
        }
        for dir in &dirs {
            crate::durable::sync_dir(dir).map_err(io(dir))?;
        }
        Ok(())
    }

    fn begin(&mut self, batch: u64) -> Result<(), SinkError> {
        self.batch = batch;
        self.written.clear();
        // `changed_dirs` is kept: an attempt that failed before its commit may have changed
        // directories this one does not touch again.
        // A replay: the earlier attempt's files go (from every day's directory), the replay
        // writes them anew. Their directories are synced with the batch's commit.
        for f in self.entries()? {
            if self.is_ours(&f.name, batch) {
                tracing::info!(file = %f.path.display(), "removing the output of an unfinished attempt of this batch");
                std::fs::remove_file(&f.path).map_err(io(&f.path))?;
                if let Some(parent) = f.path.parent() {
                    self.changed_dirs.insert(parent.to_path_buf());
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<(), SinkError> {
        let Some(column) = self.day_column.clone() else {
            let dir = self.dir.clone();
            return self.write_file(&dir, None, rows);
        };
        for day in split_by_day(rows, &column)? {
            let name = day.dir_name();
            let dir = self.day_dir(&name)?;
            self.write_file(&dir, Some(&name), &day.rows)?;
        }
        Ok(())
    }

    /// Syncs every day directory the batch changed, then the topic directory (which holds
    /// the entries of new day directories, possibly created by another instance that has not
    /// synced it yet), so the commit that follows names only durable files.
    fn commit(&mut self, _done: BatchDone<'_>) -> Result<Vec<String>, SinkError> {
        let mut dirs = std::mem::take(&mut self.changed_dirs);
        dirs.remove(&self.dir);
        for dir in dirs.iter().chain([&self.dir]) {
            crate::durable::sync_dir(dir).map_err(io(dir))?;
        }
        Ok(std::mem::take(&mut self.written))
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SinkError + '_ {
    move |source| SinkError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_its_own_files_of_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let all =
            ParquetSink::new(dir.path().into(), String::new(), ParquetCompression::Snappy).unwrap();
        assert!(all.is_ours("part-00000003-0000.parquet", 3));
        assert!(all.is_ours("part-00000003-0012.parquet", 3));
        assert!(!all.is_ours("part-00000004-0000.parquet", 3));
        assert!(!all.is_ours("part-00000003-0000-i1of2.parquet", 3));
        let one = ParquetSink::new(
            dir.path().into(),
            "-i1of2".into(),
            ParquetCompression::Snappy,
        )
        .unwrap();
        assert!(one.is_ours("part-00000003-0000-i1of2.parquet", 3));
        assert!(!one.is_ours("part-00000003-0000.parquet", 3));
        assert!(!one.is_ours("part-00000003-0000-i0of2.parquet", 3));
        assert!(!one.is_ours("part-00000003-00000-i1of2.parquet", 3));
        assert!(!one.is_ours("part-0000003-0000-i1of2.parquet", 3));
    }

    #[test]
    fn finds_the_files_it_could_collide_with() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "part-00000001-0000.parquet",
            "part-00000002-0000-i0of2.parquet",
            "part-00000003-0000-i1of2.parquet",
            "notes.parquet",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let existing = |suffix: &str| {
            let sink =
                ParquetSink::new(dir.path().into(), suffix.into(), ParquetCompression::Snappy)
                    .unwrap();
            sink.existing()
                .unwrap()
                .into_iter()
                .map(|f| (f.batch, f.own))
                .collect::<Vec<_>>()
        };
        assert_eq!(existing(""), [(1, true), (2, false), (3, false)]);
        assert_eq!(existing("-i0of2"), [(1, false), (2, true)]);
        assert_eq!(existing("-p5"), [(1, false)]);
    }

    fn day_rows(times: &[Option<i64>]) -> RecordBatch {
        use arrow::array::{Int32Array, TimestampMicrosecondArray};
        use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]);
        let ids: Vec<i32> = (0..times.len() as i32).collect();
        RecordBatch::try_new(
            std::sync::Arc::new(schema),
            vec![
                std::sync::Arc::new(Int32Array::from(ids)),
                std::sync::Arc::new(
                    TimestampMicrosecondArray::from(times.to_vec()).with_timezone("UTC"),
                ),
            ],
        )
        .unwrap()
    }

    #[test]
    fn partitioned_by_day_writes_a_file_per_chunk_per_day_and_finds_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let open = |suffix: &str| {
            ParquetSink::new(dir.path().into(), suffix.into(), ParquetCompression::Snappy)
                .unwrap()
                .with_partition_by_day(Some("time".into()))
        };
        let day = 86_400_000_000;
        let mut sink = open("");
        sink.begin(0).unwrap();
        sink.write(&day_rows(&[Some(day + 1), Some(-1), None, Some(day)]))
            .unwrap();
        sink.write(&day_rows(&[Some(-5)])).unwrap();
        let names = sink
            .commit(BatchDone {
                batch: 0,
                next_offsets: &Default::default(),
            })
            .unwrap();
        assert_eq!(
            names,
            [
                "date=1969-12-31/part-00000000-0000.parquet",
                "date=1970-01-02/part-00000000-0001.parquet",
                "date=__HIVE_DEFAULT_PARTITION__/part-00000000-0002.parquet",
                "date=1969-12-31/part-00000000-0003.parquet",
            ]
        );
        for name in &names {
            assert!(dir.path().join(name).is_file(), "{name}");
        }
        // Batch 1 crashed mid-way: a file and a temporary in a day directory.
        std::fs::write(
            dir.path()
                .join("date=1970-01-02/part-00000001-0000.parquet"),
            b"x",
        )
        .unwrap();
        std::fs::write(
            dir.path()
                .join("date=1970-01-02/.part-00000001-0001.parquet.tmp"),
            b"x",
        )
        .unwrap();
        let mut sink = open("");
        assert!(
            !dir.path()
                .join("date=1970-01-02/.part-00000001-0001.parquet.tmp")
                .exists(),
            "temporaries in day directories are cleared"
        );
        let found: Vec<(u64, bool)> = sink
            .existing()
            .unwrap()
            .iter()
            .map(|f| (f.batch, f.own))
            .collect();
        assert_eq!(
            found,
            [(0, true), (0, true), (0, true), (1, true), (0, true)]
        );
        // The replay of batch 1 removes the earlier attempt's file wherever it is.
        sink.begin(1).unwrap();
        assert!(
            !dir.path()
                .join("date=1970-01-02/part-00000001-0000.parquet")
                .exists()
        );
        assert_eq!(
            sink.commit(BatchDone {
                batch: 0,
                next_offsets: &Default::default()
            })
            .unwrap(),
            Vec::<String>::new()
        );
        // An instance finds the all-partitions consumer's nested files; --overwrite removes them.
        let mut other = open("-i0of2");
        let files = other.existing().unwrap();
        assert_eq!(files.len(), 4);
        assert!(files.iter().all(|f| !f.own));
        other.remove(&files).unwrap();
        assert!(open("").existing().unwrap().is_empty());
        // _checkpoint and _bad_records are not data directories.
        std::fs::create_dir(dir.path().join("_bad_records")).unwrap();
        std::fs::write(
            dir.path().join("_bad_records/part-00000009-0000.parquet"),
            b"x",
        )
        .unwrap();
        assert!(open("").existing().unwrap().is_empty());
    }

    #[test]
    fn without_the_setting_files_stay_flat() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink =
            ParquetSink::new(dir.path().into(), String::new(), ParquetCompression::Snappy).unwrap();
        sink.begin(3).unwrap();
        sink.write(&day_rows(&[Some(0), Some(86_400_000_000 * 400)]))
            .unwrap();
        assert_eq!(
            sink.commit(BatchDone {
                batch: 0,
                next_offsets: &Default::default()
            })
            .unwrap(),
            ["part-00000003-0000.parquet"]
        );
    }
}
