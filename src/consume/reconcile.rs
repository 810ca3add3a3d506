//! Before a topic's first batch, its checkpoint and its output must tell the same story.
//!
//! Batches are numbered from the checkpoint, and a replay deletes the files of the batch it
//! replays. So output the checkpoint does not account for is dangerous: a checkpoint moved
//! away, pointed elsewhere or restored from an older copy would make the next run write its
//! records a second time (with other batch sizes) or delete committed files (with the same
//! numbers), or, starting at `latest`, lose them.
//!
//! The rule: a batch's output is written only after its plan is durable, and a plan only after
//! the previous batch's commit. So with last commit `c`, the only uncommitted batch the output
//! may hold is `c + 1` (whose plan is there, or was lost with a damaged file); with no commit,
//! only the planned batch 0; with no checkpoint at all, nothing. Anything more refuses to
//! start, naming the two ways out: a new output directory, or `--overwrite`, which deletes this
//! consumer's earlier output, bad records and checkpoint first.
//!
//! Files of another consumer whose partitions overlap this one's (one of the two consumed all
//! partitions) are not this consumer's to delete, even with `--overwrite`: the other's
//! checkpoint still counts them as committed. Without a checkpoint of its own, their presence
//! refuses the start too.

use std::path::{Path, PathBuf};

use super::ConsumeError;
use super::checkpoint::{Checkpoint, Recovered};
use crate::sink::day::DATE_COLUMN;
use crate::sink::{ExistingFile, Sink, SinkError};

/// What the start-up check needs besides the checkpoint and the sink.
pub struct Reconcile {
    pub topic: String,
    /// `_bad_records/` of the topic, when the sink keeps files.
    pub bad_records_dir: Option<PathBuf>,
    /// The instance suffix of this consumer's file names (`""`, `-i0of2`, ...).
    pub suffix: String,
    pub overwrite: bool,
}

impl Reconcile {
    /// Applies `--overwrite`, reads the checkpoint and checks the output against it.
    pub fn run(
        &self,
        checkpoint: &Checkpoint,
        sink: &mut dyn Sink,
    ) -> Result<Recovered, ConsumeError> {
        let sink_error = |source| ConsumeError::Sink {
            topic: self.topic.clone(),
            source,
        };
        let checkpoint_error = |source| ConsumeError::Checkpoint {
            topic: self.topic.clone(),
            source,
        };
        if self.overwrite {
            let files: Vec<ExistingFile> = sink
                .existing()
                .map_err(sink_error)?
                .into_iter()
                .filter(|f| f.own)
                .collect();
            let bad = self.bad_record_files().map_err(sink_error)?;
            tracing::warn!(topic = %self.topic, data_files = files.len(), bad_record_files = bad.len(), checkpoint = %checkpoint.dir().display(), "--overwrite: deleting this consumer's earlier output and checkpoint; consuming starts over from consumer.starting_offsets");
            sink.remove(&files).map_err(sink_error)?;
            for path in bad {
                std::fs::remove_file(&path).map_err(|source| {
                    sink_error(SinkError::Io {
                        path: path.display().to_string(),
                        source,
                    })
                })?;
            }
            checkpoint.clear().map_err(checkpoint_error)?;
        }
        let recovered = checkpoint.recover().map_err(checkpoint_error)?;
        let existing = sink.existing().map_err(sink_error)?;
        self.check(checkpoint.dir(), &recovered, &existing)?;
        Ok(recovered)
    }

    fn check(
        &self,
        checkpoint: &Path,
        recovered: &Recovered,
        existing: &[ExistingFile],
    ) -> Result<(), ConsumeError> {
        let allowed = match (&recovered.last_commit, &recovered.unfinished) {
            (Some(commit), _) => Some(commit.batch + 1),
            (None, Some(plan)) => Some(plan.batch),
            (None, None) => None,
        };
        let mut unaccounted: Vec<&ExistingFile> = existing
            .iter()
            .filter(|f| match allowed {
                None => true,
                Some(limit) => f.own && f.batch > limit,
            })
            .collect();
        // Another consumer's files first: for them --overwrite is no way out.
        unaccounted.sort_by_key(|f| f.own);
        let Some(first) = unaccounted.first() else {
            return Ok(());
        };
        let why = if !first.own {
            "it was written by another consumer whose partitions overlap this one's; it is not \
             this consumer's to delete, not even with --overwrite"
                .to_string()
        } else {
            match (&recovered.last_commit, allowed) {
                (_, None) => format!("there is no checkpoint at {}", checkpoint.display()),
                (Some(commit), _) => format!(
                    "the checkpoint at {} ends at batch {}, the output holds batch {}",
                    checkpoint.display(),
                    commit.batch,
                    unaccounted
                        .iter()
                        .map(|f| f.batch)
                        .max()
                        .unwrap_or_default()
                ),
                (None, _) => format!(
                    "the checkpoint at {} has no commit yet",
                    checkpoint.display()
                ),
            }
        };
        Err(ConsumeError::UnaccountedOutput {
            topic: self.topic.clone(),
            dir: topic_dir_of(&first.path).display().to_string(),
            count: unaccounted.len(),
            first: first.path.display().to_string(),
            why,
        })
    }

    /// This consumer's `_bad_records/batch-<n><suffix>.jsonl` files.
    fn bad_record_files(&self) -> Result<Vec<PathBuf>, SinkError> {
        let Some(dir) = &self.bad_records_dir else {
            return Ok(Vec::new());
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(SinkError::Io {
                    path: dir.display().to_string(),
                    source,
                });
            }
        };
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| SinkError::Io {
                path: dir.display().to_string(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let number = name
                .strip_prefix("batch-")
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.strip_suffix(self.suffix.as_str()));
            if number.is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
                found.push(entry.path());
            }
        }
        Ok(found)
    }
}

/// The topic directory holding a data file: its directory, or that directory's parent for a
/// file in a day partition (`date=2021-06-22/`).
fn topic_dir_of(file: &Path) -> &Path {
    let dir = file.parent().unwrap_or(Path::new(""));
    let in_day = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{DATE_COLUMN}=")));
    match dir.parent() {
        Some(topic_dir) if in_day => topic_dir,
        _ => dir,
    }
}
