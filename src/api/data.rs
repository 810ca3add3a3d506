//! Loads the data dir once at start: every `*.json` file becomes a [`Dataset`] whose records are
//! validated, sorted by `time` and stored as compact NDJSON lines in one contiguous buffer, so a
//! stream is a sequence of zero-copy slices and no request re-parses or copies the file.
//!
//! Symlinks: a `*.json` link that resolves inside the data dir is served like a file; one that
//! leaves it refuses the start (naming the link and its target) unless [`Symlinks::Follow`]
//! (`api.follow_symlinks = true`): whoever can drop a link into the data dir must not be able
//! to publish any file the server can read. Hard links cannot be told from files and are
//! served.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::json::compact_into;

/// Why the data dir cannot be served. Each one names the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "data dir {dir} does not exist: create it or pass --data-dir (api.data_dir); `factorypal gen-data --out {dir}` writes sample data"
    )]
    MissingDir { dir: PathBuf },
    #[error(
        "data dir {dir} has no *.json files: add some, or run `factorypal gen-data --out {dir}`"
    )]
    EmptyDir { dir: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON at line {line}, column {column}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path} must hold one JSON array of records, but it holds {found}")]
    NotAnArray { path: PathBuf, found: &'static str },
    #[error(
        "{path}: element {index} is not a JSON object (every record must be an object with a numeric `time`)"
    )]
    NotAnObject { path: PathBuf, index: usize },
    #[error("{path}: element {index} has no `time` field (every record needs a numeric `time`)")]
    MissingTime { path: PathBuf, index: usize },
    #[error(
        "{path}: element {index} has a non-numeric `time`: {value} (expected a number of unix seconds)"
    )]
    BadTime {
        path: PathBuf,
        index: usize,
        value: String,
    },
    #[error(
        "{path}: file name {name:?} cannot be an endpoint: use letters, digits, `_`, `-` or `.`"
    )]
    BadName { path: PathBuf, name: String },
    #[error(
        "{path} is a symlink to {target}, outside the data dir {dir}: refusing to serve it; copy \
         the file into the data dir, remove the link, or set api.follow_symlinks = true to serve \
         links that leave the data dir"
    )]
    SymlinkOutside {
        path: PathBuf,
        target: PathBuf,
        dir: PathBuf,
    },
}

/// Which symlinks among the data dir's `*.json` files are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Symlinks {
    /// Only links that resolve inside the data dir; any other refuses the start.
    #[default]
    Inside,
    /// Links wherever they lead (`api.follow_symlinks = true`).
    Follow,
}

/// One `*.json` file of the data dir: the name it is listed under, and the file to read (the
/// link's target, resolved once when checked, for a symlink).
#[derive(Debug)]
struct JsonFile {
    listed: PathBuf,
    read_from: PathBuf,
}

/// One served file: its records as NDJSON lines, in ascending `time` order.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The file stem: `metrics.json` is served at `/stream_data_metrics`.
    pub name: String,
    /// All lines back to back, each ending in `\n`.
    lines: Bytes,
    /// `ends[i]` is where line `i` ends in `lines`; line `i` starts at `ends[i - 1]` (or 0).
    ends: Vec<usize>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn start(&self, index: usize) -> usize {
        if index == 0 { 0 } else { self.ends[index - 1] }
    }

    /// Line `index` (with its `\n`), without copying.
    pub fn line(&self, index: usize) -> Bytes {
        self.lines.slice(self.start(index)..self.ends[index])
    }

    /// Lines `from..to` back to back, without copying.
    pub fn lines(&self, from: usize, to: usize) -> Bytes {
        if from >= to {
            return Bytes::new();
        }
        self.lines.slice(self.start(from)..self.ends[to - 1])
    }

    /// The index just past the last line that starts before `from`'s start + `max_bytes`
    /// (at least `from + 1`), so a batch of lines stays near `max_bytes`.
    pub fn batch_end(&self, from: usize, to: usize, max_bytes: usize) -> usize {
        let limit = self.start(from) + max_bytes;
        let found = self.ends[from..to].partition_point(|&end| end <= limit);
        (from + found).max(from + 1).min(to)
    }

    /// Parses one file's text (a JSON array of objects with a numeric `time`).
    pub fn parse(path: &Path, name: String, text: &[u8]) -> Result<Self, DataError> {
        let first = text.iter().copied().find(|b| !b.is_ascii_whitespace());
        if first != Some(b'[') {
            // Report a syntax error first if there is one: it is the more precise message.
            serde_json::from_slice::<IgnoredAny>(text).map_err(|e| syntax(path, &e))?;
            let found = match first {
                Some(b'{') => "an object",
                Some(b'"') => "a string",
                Some(b't' | b'f') => "a boolean",
                Some(b'n') => "null",
                _ => "a number",
            };
            return Err(DataError::NotAnArray {
                path: path.into(),
                found,
            });
        }
        let elements: Vec<&RawValue> =
            serde_json::from_slice(text).map_err(|e| syntax(path, &e))?;

        let mut keyed: Vec<(f64, &RawValue)> = Vec::with_capacity(elements.len());
        for (index, raw) in elements.into_iter().enumerate() {
            keyed.push((record_time(path, index, raw)?, raw));
        }
        // A stable sort keeps records with equal `time` in file order.
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));

        let mut lines = Vec::with_capacity(text.len());
        let mut ends = Vec::with_capacity(keyed.len());
        for (_, raw) in keyed {
            compact_into(raw.get().as_bytes(), &mut lines);
            lines.push(b'\n');
            ends.push(lines.len());
        }
        lines.shrink_to_fit();
        Ok(Dataset {
            name,
            lines: Bytes::from(lines),
            ends,
        })
    }
}

fn syntax(path: &Path, e: &serde_json::Error) -> DataError {
    let reason = e.to_string();
    // serde_json appends " at line L column C"; we report those as fields.
    let reason = match reason.rfind(" at line ") {
        Some(i) => reason[..i].to_string(),
        None => reason,
    };
    DataError::Syntax {
        path: path.into(),
        line: e.line(),
        column: e.column(),
        reason,
    }
}

/// Reads only the `time` field of one element; everything else is skipped, not built.
fn record_time(path: &Path, index: usize, raw: &RawValue) -> Result<f64, DataError> {
    #[derive(Deserialize)]
    struct TimeOnly<'a> {
        // `default` + a plain `&RawValue` reader: a missing field is `None`, but `null` is
        // `Some("null")` and so reported as a non-numeric time, not a missing one.
        #[serde(borrow, default, deserialize_with = "present")]
        time: Option<&'a RawValue>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
        <&RawValue>::deserialize(d).map(Some)
    }
    if !raw.get().starts_with('{') {
        return Err(DataError::NotAnObject {
            path: path.into(),
            index,
        });
    }
    // The array already parsed, so the only failure left is a field repeated (`time` twice).
    let probe: TimeOnly<'_> = serde_json::from_str(raw.get()).map_err(|e| DataError::BadTime {
        path: path.into(),
        index,
        value: e.to_string(),
    })?;
    let time = probe.time.ok_or_else(|| DataError::MissingTime {
        path: path.into(),
        index,
    })?;
    serde_json::from_str::<f64>(time.get()).map_err(|_| DataError::BadTime {
        path: path.into(),
        index,
        value: time.get().to_string(),
    })
}

/// Loads every `*.json` file of `dir`, sorted by name, serving only symlinks that stay
/// inside it.
pub fn load_dir(dir: &Path) -> Result<Vec<Dataset>, DataError> {
    load_dir_with(dir, Symlinks::Inside)
}

/// [`load_dir`] with a choice of which symlinks to serve.
pub fn load_dir_with(dir: &Path, symlinks: Symlinks) -> Result<Vec<Dataset>, DataError> {
    let files = json_files(dir, symlinks)?;
    let mut datasets = Vec::with_capacity(files.len());
    for file in files {
        let name = file
            .listed
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(DataError::BadName {
                path: file.listed,
                name,
            });
        }
        let text = std::fs::read(&file.read_from).map_err(io_error(&file.listed))?;
        let dataset = Dataset::parse(&file.listed, name, &text)?;
        tracing::info!(file = %file.listed.display(), records = dataset.len(), "loaded");
        datasets.push(dataset);
    }
    Ok(datasets)
}

/// The `*.json` files of `dir`, sorted by name, each symlink checked against `symlinks`.
fn json_files(dir: &Path, symlinks: Symlinks) -> Result<Vec<JsonFile>, DataError> {
    if !dir.is_dir() {
        return Err(DataError::MissingDir { dir: dir.into() });
    }
    // Where the dir really is (it may itself be reached through links): "inside" means under it.
    let real_dir = std::fs::canonicalize(dir).map_err(io_error(dir))?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let listed = entry.path();
        if listed.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let is_link = entry.file_type().map_err(io_error(&listed))?.is_symlink();
        if !is_link {
            if listed.is_file() {
                files.push(JsonFile {
                    read_from: listed.clone(),
                    listed,
                });
            }
            continue;
        }
        // A dangling link is an error, not a file silently left out.
        let target = std::fs::canonicalize(&listed).map_err(io_error(&listed))?;
        if symlinks == Symlinks::Inside && !target.starts_with(&real_dir) {
            return Err(DataError::SymlinkOutside {
                path: listed,
                target,
                dir: real_dir,
            });
        }
        if target.is_file() {
            tracing::info!(link = %listed.display(), target = %target.display(), "following symlink");
            files.push(JsonFile {
                listed,
                read_from: target,
            });
        }
    }
    if files.is_empty() {
        return Err(DataError::EmptyDir { dir: dir.into() });
    }
    files.sort_by(|a, b| a.listed.cmp(&b.listed));
    Ok(files)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.to_path_buf();
    move |source| DataError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Dataset, DataError> {
        Dataset::parse(Path::new("t.json"), "t".into(), text.as_bytes())
    }

    #[test]
    fn sorts_by_time_stably_and_compacts() {
        let d =
            parse(r#"[ {"time": 3, "a": "x y"}, {"time":1,"n":1}, {"time":1.0,"n":2} ]"#).unwrap();
        assert_eq!(
            d.lines(0, d.len()),
            &b"{\"time\":1,\"n\":1}\n{\"time\":1.0,\"n\":2}\n{\"time\":3,\"a\":\"x y\"}\n"[..]
        );
        assert_eq!(d.line(2), &b"{\"time\":3,\"a\":\"x y\"}\n"[..]);
    }

    #[test]
    fn compaction_keeps_escaped_quotes_and_spaces_in_strings() {
        let d = parse(r#"[{"time": 1, "s": "a \" b\\", "t" : [ 1 , 2 ]}]"#).unwrap();
        assert_eq!(
            d.line(0),
            &b"{\"time\":1,\"s\":\"a \\\" b\\\\\",\"t\":[1,2]}\n"[..]
        );
    }

    #[test]
    fn batch_end_respects_byte_budget() {
        let d = parse(r#"[{"time":1},{"time":2},{"time":3}]"#).unwrap();
        // Each line is 11 bytes.
        assert_eq!(d.batch_end(0, 3, 22), 2);
        assert_eq!(d.batch_end(0, 3, 5), 1);
        assert_eq!(d.batch_end(1, 3, 1000), 3);
    }

    #[test]
    fn bad_inputs_name_what_is_wrong() {
        assert!(matches!(
            parse("[{\"time\":1},"),
            Err(DataError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse("{\"time\":1}"),
            Err(DataError::NotAnArray {
                found: "an object",
                ..
            })
        ));
        assert!(matches!(
            parse("[{\"time\":1}, 5]"),
            Err(DataError::NotAnObject { index: 1, .. })
        ));
        assert!(matches!(
            parse("[[1,2]]"),
            Err(DataError::NotAnObject { index: 0, .. })
        ));
        assert!(matches!(
            parse("[{\"x\":1}]"),
            Err(DataError::MissingTime { index: 0, .. })
        ));
        assert!(matches!(
            parse("[{\"time\":\"1\"}]"),
            Err(DataError::BadTime { index: 0, .. })
        ));
        assert!(matches!(
            parse("[{\"time\":null}]"),
            Err(DataError::BadTime { index: 0, .. })
        ));
    }
}
