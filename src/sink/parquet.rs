//! The Parquet sink: `OUTPUT/TOPIC/part-<batch>-<n>[-<instance>].parquet`, one file per chunk of
//! at most `max_records_per_file` rows. Each file is written under a hidden temporary name,
//! synced, and renamed into place, so a name ending in `.parquet` is always a whole file.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{BatchDone, ExistingFile, Sink, SinkError};
use crate::settings::ParquetCompression;

pub struct ParquetSink {
    dir: PathBuf,
    /// `""` for a consumer of all partitions, `-i0of2` and the like for one instance of several,
    /// so instances writing into one directory never collide.
    suffix: String,
    properties: WriterProperties,
    batch: u64,
    written: Vec<String>,
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
            batch: 0,
            written: Vec::new(),
        };
        sink.remove_temporaries()?;
        Ok(sink)
    }

    fn prefix(batch: u64) -> String {
        format!("part-{batch:08}-")
    }

    /// Our files of `batch`: `part-<batch>-<nnnn><suffix>.parquet`.
    fn is_ours(&self, name: &str, batch: u64) -> bool {
        parse_name(name).is_some_and(|n| n.batch == batch && n.suffix == self.suffix)
    }

    /// Hidden temporaries of ours left by a crash.
    fn remove_temporaries(&self) -> Result<(), SinkError> {
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".part-") && name.ends_with(&format!("{}.parquet.tmp", self.suffix))
            {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
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
struct FileName<'a> {
    batch: u64,
    suffix: &'a str,
}

fn parse_name(name: &str) -> Option<FileName<'_>> {
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
    /// all partitions (no suffix). Instances (`-i0of2`, `-p0-2`) do not overlap each other's
    /// names; overlapping partition selections running together are stopped by the
    /// checkpoint root's partition locks.
    fn existing(&self) -> Result<Vec<ExistingFile>, SinkError> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(parsed) = parse_name(&name) else {
                continue;
            };
            let own = parsed.suffix == self.suffix;
            if own || parsed.suffix.is_empty() || self.suffix.is_empty() {
                found.push(ExistingFile {
                    path: entry.path(),
                    batch: parsed.batch,
                    own,
                });
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    fn remove(&mut self, files: &[ExistingFile]) -> Result<(), SinkError> {
        for f in files {
            std::fs::remove_file(&f.path).map_err(io(&f.path))?;
        }
        crate::durable::sync_dir(&self.dir).map_err(io(&self.dir))
    }

    fn begin(&mut self, batch: u64) -> Result<(), SinkError> {
        self.batch = batch;
        self.written.clear();
        // A replay: the earlier attempt's files go, the replay writes them anew.
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if self.is_ours(&name, batch) {
                tracing::info!(file = %entry.path().display(), "removing the output of an unfinished attempt of this batch");
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
        Ok(())
    }

    fn write(&mut self, rows: &RecordBatch) -> Result<(), SinkError> {
        let name = format!(
            "{}{:04}{}.parquet",
            Self::prefix(self.batch),
            self.written.len(),
            self.suffix
        );
        let path = self.dir.join(&name);
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
        self.written.push(name);
        Ok(())
    }

    fn commit(&mut self, _done: BatchDone<'_>) -> Result<Vec<String>, SinkError> {
        crate::durable::sync_dir(&self.dir).map_err(io(&self.dir))?;
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
}
