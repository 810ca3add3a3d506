//! The Parquet sink: `OUTPUT/TOPIC/part-<batch>-<n>[-<instance>].parquet`, one file per chunk of
//! at most `max_records_per_file` rows. Each file is written under a hidden temporary name,
//! synced, and renamed into place, so a name ending in `.parquet` is always a whole file.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{Sink, SinkError};
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
        let codec = match compression {
            ParquetCompression::None => Compression::UNCOMPRESSED,
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
            ParquetCompression::Lz4 => Compression::LZ4_RAW,
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
        };
        let sink = Self {
            dir,
            suffix: instance_suffix,
            properties: WriterProperties::builder().set_compression(codec).build(),
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
        let number = name
            .strip_prefix(&Self::prefix(batch))
            .and_then(|rest| rest.strip_suffix(".parquet"))
            .and_then(|rest| rest.strip_suffix(self.suffix.as_str()));
        number.is_some_and(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
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

impl Sink for ParquetSink {
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

    fn commit(&mut self) -> Result<Vec<String>, SinkError> {
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
    }
}
