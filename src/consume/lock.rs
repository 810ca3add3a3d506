//! One consumer per checkpoint, and per partition of an output: two consumers writing the same
//! records into one output would duplicate some and, replaying each other's batches, delete
//! others. Each holds an exclusive `flock` for the life of its topic job; a second one
//! fails at once naming the holder's PID and the lock file. The kernel drops the lock when the
//! holder dies, however it dies, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} is in use by another consumer ({holder}, lock file {path}): two consumers there would write records twice; stop the other one, or give this one its own --output"
    )]
    Held {
        what: String,
        holder: String,
        path: PathBuf,
    },
    #[error("cannot take the lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Locks held until dropped.
#[derive(Debug)]
pub struct Ownership {
    _files: Vec<File>,
}

impl Ownership {
    /// Locks the checkpoint directory `checkpoint` (its file `lock`) and each of `partitions`
    /// of the topic's output directory `output` (`_locks/partition-<p>.lock`), so neither two
    /// consumers of one checkpoint, nor two whose partition selections overlap in one output
    /// (`--partitions 0,1` and `--instance 0/2`, or another `--checkpoint`), can run at once.
    pub fn acquire(
        checkpoint: &Path,
        output: &Path,
        partitions: &[i32],
    ) -> Result<Self, LockError> {
        let what = format!("checkpoint {}", checkpoint.display());
        let mut files = vec![lock(&checkpoint.join("lock"), what)?];
        let dir = output.join("_locks");
        std::fs::create_dir_all(&dir).map_err(|source| LockError::Io {
            path: dir.clone(),
            source,
        })?;
        for p in partitions {
            let path = dir.join(format!("partition-{p}.lock"));
            files.push(lock(
                &path,
                format!("partition {p} of {}", output.display()),
            )?);
        }
        Ok(Self { _files: files })
    }
}

/// Takes the exclusive lock on `path` without waiting and writes our PID into it.
fn lock(path: &Path, what: String) -> Result<File, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("PID {pid}"),
                Err(_) => "PID unknown".to_string(),
            };
            return Err(LockError::Held {
                what,
                holder,
                path: path.to_path_buf(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| write!(file, "{}", std::process::id()))
        .map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("all");
        std::fs::create_dir_all(&dir).unwrap();
        let first = Ownership::acquire(&dir, root.path(), &[0, 1]).unwrap();
        let err = Ownership::acquire(&dir, root.path(), &[0, 1]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("PID {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("lock"), "{text}");
        // Another checkpoint, but an overlapping partition.
        let other = root.path().join("p1-2");
        std::fs::create_dir_all(&other).unwrap();
        let err = Ownership::acquire(&other, root.path(), &[1, 2]).unwrap_err();
        assert!(err.to_string().contains("partition 1"), "{err}");
        drop(first);
        Ownership::acquire(&dir, root.path(), &[0, 1]).unwrap();
    }
}
