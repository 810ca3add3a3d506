//! Files that are whole or absent, never half-written under their real name: written under a
//! hidden temporary name beside the target, synced, renamed into place, and the directory
//! synced so the rename survives a crash. Checkpoints, bad-record files and Parquet use it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The hidden temporary a file is written under before it gets `path`'s name.
pub fn temporary_for(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` durably and atomically.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temporary_for(path);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    rename_into_place(&tmp, path)
}

/// Renames a synced temporary to its real name and makes the rename durable.
pub fn rename_into_place(tmp: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        assert_eq!(temporary_for(&path), dir.path().join(".a.json.tmp"));
        write_file(&path, b"one").unwrap();
        write_file(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
