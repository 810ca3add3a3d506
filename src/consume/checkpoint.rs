//! The consumer's checkpoint: for every micro-batch, a plan (the offset range per partition)
//! written **before** any output, and a commit (the next offsets, the files written) written
//! **after** the output is durably in place. Both are small JSON files written under a
//! temporary name, synced, and renamed, with the directory synced after ([`crate::durable`]).
//!
//! On start: the newest commit gives the next offsets. A plan newer than it is a batch that did
//! not finish; it is replayed with the same ranges (the sink replaces the earlier attempt's
//! output), so every record ends up in the output exactly once, whenever a crash hit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Committed batches whose checkpoint files are kept (older ones are pruned); enough to see
/// recent history, few enough that the directory stays small.
const KEEP_BATCHES: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "checkpoint file {path} is damaged ({reason}); delete that one file and run again: the batch it belongs to is then replayed from the previous commit, its output rewritten and nothing duplicated (or start the topic over with --overwrite)"
    )]
    Damaged { path: String, reason: String },
}

/// What a batch will read: `[start, end)` per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub batch: u64,
    pub ranges: BTreeMap<i32, (i64, i64)>,
}

/// A finished batch and where the topic stands after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub batch: u64,
    /// The next offset to read, for every partition this consumer owns.
    pub next_offsets: BTreeMap<i32, i64>,
    pub files: Vec<String>,
    pub rows: u64,
    pub bad_records: u64,
}

/// What the checkpoint says at start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    pub last_commit: Option<Commit>,
    /// A planned batch that never committed: replay it first.
    pub unfinished: Option<Plan>,
}

/// A checkpoint directory. Cheap to clone, so writes can move to a blocking thread; who may
/// write it is decided by its lock ([`super::lock`]).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
}

impl Checkpoint {
    pub fn open(dir: PathBuf) -> Result<Self, CheckpointError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self { dir })
    }

    /// A checkpoint that is only read (nothing is created): for readers of the output.
    pub fn existing(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, batch: u64, kind: &str) -> PathBuf {
        self.dir.join(format!("{batch:012}.{kind}.json"))
    }

    /// The plan and commit files: `(batch, kind, path)`.
    fn entries(&self) -> Result<Vec<(u64, &'static str, PathBuf)>, CheckpointError> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let entry = entry.map_err(io(&self.dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some((number, kind)) = name.strip_suffix(".json").and_then(|n| n.split_once('.'))
            else {
                continue;
            };
            let Ok(batch) = number.parse::<u64>() else {
                continue;
            };
            let kind = match kind {
                "commit" => "commit",
                "plan" => "plan",
                _ => continue,
            };
            entries.push((batch, kind, entry.path()));
        }
        Ok(entries)
    }

    /// Reads the newest commit, and a newer plan if there is one.
    pub fn recover(&self) -> Result<Recovered, CheckpointError> {
        let (mut last_commit, mut last_plan) = (None::<u64>, None::<u64>);
        for (batch, kind, _) in self.entries()? {
            let slot = if kind == "commit" {
                &mut last_commit
            } else {
                &mut last_plan
            };
            *slot = (*slot).max(Some(batch));
        }
        let last_commit = last_commit
            .map(|b| self.read::<Commit>(&self.path(b, "commit")))
            .transpose()?;
        let committed = last_commit.as_ref().map(|c| c.batch);
        let unfinished = match last_plan {
            Some(plan) if Some(plan) > committed => {
                Some(self.read::<Plan>(&self.path(plan, "plan"))?)
            }
            _ => None,
        };
        Ok(Recovered {
            last_commit,
            unfinished,
        })
    }

    /// Forgets every batch (for `--overwrite`): the next run starts from
    /// `consumer.starting_offsets`.
    pub fn clear(&self) -> Result<(), CheckpointError> {
        for (_, _, path) in self.entries()? {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        crate::durable::sync_dir(&self.dir).map_err(io(&self.dir))
    }

    pub fn write_plan(&self, plan: &Plan) -> Result<(), CheckpointError> {
        self.write(&self.path(plan.batch, "plan"), plan)
    }

    /// Marks the batch done, then prunes checkpoint files of old batches.
    pub fn write_commit(&self, commit: &Commit) -> Result<(), CheckpointError> {
        self.write(&self.path(commit.batch, "commit"), commit)?;
        if let Some(old) = commit.batch.checked_sub(KEEP_BATCHES) {
            for kind in ["plan", "commit"] {
                let _ = std::fs::remove_file(self.path(old, kind));
            }
        }
        Ok(())
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<T, CheckpointError> {
        let text = std::fs::read(path).map_err(io(path))?;
        serde_json::from_slice(&text).map_err(|e| CheckpointError::Damaged {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }

    fn write<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), CheckpointError> {
        let text = serde_json::to_vec_pretty(value).expect("checkpoint entries serialize");
        crate::durable::write_file(path, &text).map_err(io(path))
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(batch: u64) -> Plan {
        Plan {
            batch,
            ranges: [(0, (10, 20)), (2, (5, 7))].into_iter().collect(),
        }
    }

    fn commit(batch: u64) -> Commit {
        Commit {
            batch,
            next_offsets: [(0, 20), (1, 3), (2, 7)].into_iter().collect(),
            files: vec![format!("part-{batch:08}-0000.parquet")],
            rows: 12,
            bad_records: 0,
        }
    }

    #[test]
    fn round_trips_and_finds_the_unfinished_batch() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path().join("cp")).unwrap();
        assert_eq!(cp.recover().unwrap(), Recovered::default());

        cp.write_plan(&plan(0)).unwrap();
        assert_eq!(cp.recover().unwrap().unfinished, Some(plan(0)));
        cp.write_commit(&commit(0)).unwrap();
        let r = cp.recover().unwrap();
        assert_eq!((r.last_commit, r.unfinished), (Some(commit(0)), None));

        cp.write_plan(&plan(1)).unwrap();
        let r = cp.recover().unwrap();
        assert_eq!(r.last_commit, Some(commit(0)));
        assert_eq!(r.unfinished, Some(plan(1)));
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path().into()).unwrap();
        std::fs::write(dir.path().join("000000000003.commit.json"), "{not json").unwrap();
        let err = cp.recover().unwrap_err().to_string();
        assert!(
            err.contains("000000000003.commit.json") && err.contains("damaged"),
            "{err}"
        );
        // Moving the checkpoint away would make the next run write everything again.
        assert!(!err.contains("move the checkpoint"), "{err}");
        assert!(err.contains("delete that one file"), "{err}");
    }

    #[test]
    fn old_batches_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let cp = Checkpoint::open(dir.path().into()).unwrap();
        for b in 0..=KEEP_BATCHES + 1 {
            cp.write_plan(&plan(b)).unwrap();
            cp.write_commit(&commit(b)).unwrap();
        }
        assert!(!cp.path(0, "commit").exists());
        assert!(!cp.path(1, "plan").exists());
        assert!(cp.path(2, "commit").exists());
        assert_eq!(
            cp.recover().unwrap().last_commit.unwrap().batch,
            KEEP_BATCHES + 1
        );
        cp.clear().unwrap();
        assert_eq!(cp.recover().unwrap(), Recovered::default());
    }
}
