//! Which of a topic's Parquet files are committed, for readers of the output (`report`).
//!
//! A file is committed once the checkpoint of the consumer that wrote it has a commit for its
//! batch: `part-<batch>-<n><suffix>.parquet` with `batch <= last commit` of the checkpoint
//! whose identity the suffix names (`""` is `all`). A newer batch's files may be half
//! written or replayed with other contents, so a reader leaves them out.

use std::path::{Path, PathBuf};

use super::checkpoint::{Checkpoint, CheckpointError};
use crate::sink::parse_name;

/// The committed data files of one topic, and how many others were seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommittedFiles {
    /// Sorted, so readers go through them in the same order every time.
    pub files: Vec<PathBuf>,
    /// Data files no checkpoint counts as committed (a batch in flight, or a consumer whose
    /// checkpoint is elsewhere).
    pub uncommitted: usize,
    /// Checkpoints found (one per consumer identity).
    pub checkpoints: usize,
}

/// One consumer's checkpoint: the suffix of its file names and its newest committed batch.
struct Committer {
    suffix: String,
    last_batch: Option<u64>,
}

/// The committed files under `topic_dir` (flat and `date=*/`), by the checkpoints under
/// `checkpoint_root` (see [`super::checkpoint_root`]).
pub fn committed_files(
    topic_dir: &Path,
    checkpoint_root: &Path,
) -> Result<CommittedFiles, CheckpointError> {
    let committers = committers(checkpoint_root)?;
    let mut found = CommittedFiles {
        checkpoints: committers.len(),
        ..CommittedFiles::default()
    };
    for path in data_files(topic_dir)? {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let committed = parse_name(&name).is_some_and(|parsed| {
            committers.iter().any(|c| {
                c.suffix == parsed.suffix && c.last_batch.is_some_and(|last| parsed.batch <= last)
            })
        });
        if committed {
            found.files.push(path);
        } else {
            found.uncommitted += 1;
        }
    }
    found.files.sort();
    Ok(found)
}

fn committers(root: &Path) -> Result<Vec<Committer>, CheckpointError> {
    let mut committers = Vec::new();
    for dir in subdirectories(root)? {
        let identity = dir.file_name().unwrap_or_default().to_string_lossy();
        let suffix = if identity == "all" {
            String::new()
        } else {
            format!("-{identity}")
        };
        let recovered = Checkpoint::existing(dir.clone()).recover()?;
        committers.push(Committer {
            suffix,
            last_batch: recovered.last_commit.map(|c| c.batch),
        });
    }
    Ok(committers)
}

/// `*.parquet` directly in `topic_dir` and in its `date=*` directories; hidden temporaries
/// (`.part-...`) and `_`-directories are not data.
fn data_files(topic_dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let mut dirs = vec![topic_dir.to_path_buf()];
    dirs.extend(subdirectories(topic_dir)?.into_iter().filter(|d| {
        d.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("date="))
    }));
    let mut files = Vec::new();
    for dir in dirs {
        for entry in read_dir(&dir)? {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".parquet") && !name.starts_with('.') && entry.path().is_file() {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

fn subdirectories(dir: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    Ok(read_dir(dir)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect())
}

/// The entries of `dir`; none when it does not exist.
fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, CheckpointError> {
    let io = |source| CheckpointError::Io {
        path: dir.display().to_string(),
        source,
    };
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.collect::<Result<_, _>>().map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(e)),
    }
}
