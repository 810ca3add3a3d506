//! Loads the data dir once at start: every `*.json` file becomes a [`Dataset`] whose records are
//! validated, sorted by `time` and stored as compact NDJSON lines in one contiguous buffer, so a
//! stream is a sequence of zero-copy slices and no request re-parses or copies the file.
//! Loading reads each file twice in chunks and never holds it whole (see [`Dataset::read`]):
//! peak memory is the larger of the first pass's index (~24–48 bytes a record while it grows,
//! ~36 during the sort) and the served buffer plus 12 bytes a record (issue 14: 1.24× the
//! file for the plant's metrics).
//!
//! Symlinks: a `*.json` link that resolves inside the data dir is served like a file; one that
//! leaves it refuses the start (naming the link and its target) unless [`Symlinks::Follow`]
//! (`api.follow_symlinks = true`): whoever can drop a link into the data dir must not be able
//! to publish any file the server can read. Hard links cannot be told from files and are
//! served.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use serde::de::{Deserializer as _, IgnoredAny};
use serde_json::value::RawValue;

use super::scan::{READ_CHUNK, Scanner, Step};

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
    #[error(
        "{path} changed while it was being loaded: start again once the file is completely written"
    )]
    Changed { path: PathBuf },
    #[error("{path} has more than {max} records: split it into several files")]
    TooManyRecords { path: PathBuf, max: u32 },
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
        Self::read(path, name, std::io::Cursor::new(text), READ_CHUNK)
    }

    /// Loads one file from `source`, reading it twice in `chunk`-sized pieces so that the
    /// whole file is never in memory: the first pass validates every record and keeps only
    /// its `time` and compact length; once those are sorted, every line's place in the buffer
    /// is known, and the second pass writes each record's compact line straight into it.
    /// Memory: pass 1 and the sort hold ~24–48 bytes a record (sort keys, lengths; ~36 while
    /// sorting), pass 2 the buffer plus 12 bytes a record (line ends and sorted positions).
    /// For records of ~50 bytes the second is the peak.
    ///
    /// Any record the fast first pass cannot take (and any error) sends the file to serde_json
    /// as a whole (`diagnose`), so errors are exactly serde_json's, with line and column.
    pub fn read<R: Read + Seek>(
        path: &Path,
        name: String,
        mut source: R,
        chunk: usize,
    ) -> Result<Self, DataError> {
        let Some(index) = index_records(path, &mut source, chunk)? else {
            return Err(diagnose(path, &mut source));
        };
        let layout = Layout::sorted(index);
        source.rewind().map_err(|e| io(path, e))?;
        let lines = fill(path, &mut source, chunk, &layout)?;
        Ok(Dataset {
            name,
            lines: Bytes::from(lines),
            ends: layout.ends,
        })
    }
}

/// A record's place in the sort: its `time` as a totally ordered integer (the order of
/// [`f64::total_cmp`]), then its index in the file, so sorting keeps equal times in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey {
    time: u64,
    record: u32,
}

impl SortKey {
    fn new(time: f64, record: u32) -> Self {
        let bits = time.to_bits();
        // Negative numbers: flip all bits (bigger magnitude sorts first); others: set the
        // sign bit so they sort after every negative.
        let time = if bits >> 63 == 1 {
            !bits
        } else {
            bits | 1 << 63
        };
        Self { time, record }
    }
}

/// What the first pass keeps of each record, in file order.
#[derive(Debug, Default)]
struct Index {
    keys: Vec<SortKey>,
    /// Compact length without the `\n`.
    lens: Vec<usize>,
}

/// The first pass: every record validated, its sort key and compact length. `None` if
/// anything is not as the fast path expects (then [`diagnose`] finds out what).
fn index_records<R: Read>(
    path: &Path,
    source: R,
    chunk: usize,
) -> Result<Option<Index>, DataError> {
    let mut scanner = Scanner::with_chunk(source, chunk);
    let mut index = Index::default();
    loop {
        match scanner.next().map_err(|e| io(path, e))? {
            Step::Element(element) => {
                let record =
                    u32::try_from(index.keys.len()).map_err(|_| DataError::TooManyRecords {
                        path: path.into(),
                        max: u32::MAX,
                    })?;
                let Some(time) = std::str::from_utf8(element.raw)
                    .ok()
                    .and_then(|raw| record_time(path, 0, raw).ok())
                else {
                    return Ok(None);
                };
                index.keys.push(SortKey::new(time, record));
                index.lens.push(element.compact_len);
            }
            Step::End => return Ok(Some(index)),
            Step::Anomaly => return Ok(None),
        }
    }
}

/// Where every line goes in the buffer.
#[derive(Debug)]
struct Layout {
    /// `ends[i]` is where line `i` (in time order) ends.
    ends: Vec<usize>,
    /// `rank[r]` is the line of the file's record `r`; `None` if the file is in time order.
    rank: Option<Vec<u32>>,
}

impl Layout {
    fn sorted(index: Index) -> Self {
        let Index { mut keys, lens } = index;
        let in_order = keys.is_sorted();
        let rank = if in_order {
            None
        } else {
            // Keys are unique (the record breaks ties), so an unstable sort is a stable one.
            keys.sort_unstable();
            let mut rank = vec![0u32; keys.len()];
            for (line, key) in keys.iter().enumerate() {
                // At most u32::MAX records (checked while indexing).
                rank[key.record as usize] = line as u32;
            }
            Some(rank)
        };
        let mut end = 0;
        let ends = keys
            .iter()
            .map(|key| {
                end += lens[key.record as usize] + 1;
                end
            })
            .collect();
        Self { ends, rank }
    }

    /// The byte range of the file's record `record` in the buffer, if there is such a record.
    fn span(&self, record: usize) -> Option<std::ops::Range<usize>> {
        let line = match &self.rank {
            None => record,
            Some(rank) => *rank.get(record)? as usize,
        };
        let end = *self.ends.get(line)?;
        let start = if line == 0 { 0 } else { self.ends[line - 1] };
        Some(start..end)
    }
}

/// The second pass: every record's compact line written at its place in a buffer of exactly
/// the size needed. A file that no longer matches the first pass is [`DataError::Changed`].
fn fill<R: Read>(
    path: &Path,
    source: R,
    chunk: usize,
    layout: &Layout,
) -> Result<Vec<u8>, DataError> {
    let changed = || DataError::Changed { path: path.into() };
    let mut lines = vec![0u8; layout.ends.last().copied().unwrap_or(0)];
    let mut scanner = Scanner::with_chunk(source, chunk);
    let mut line = Vec::new();
    let mut record = 0;
    loop {
        line.clear();
        match scanner.next_into(&mut line).map_err(|e| io(path, e))? {
            Step::Element(_) => {
                let span = layout.span(record).ok_or_else(changed)?;
                line.push(b'\n');
                if line.len() != span.len() {
                    return Err(changed());
                }
                lines[span].copy_from_slice(&line);
                record += 1;
            }
            Step::End if record == layout.ends.len() => return Ok(lines),
            Step::End | Step::Anomaly => return Err(changed()),
        }
    }
}

/// Why a file the fast path did not take cannot be served, found by serde_json reading it as
/// a stream (so in bounded memory) exactly as a whole-file parse would: a syntax error
/// anywhere comes first, then a top level that is not an array, then the first bad element.
fn diagnose<R: Read + Seek>(path: &Path, source: R) -> DataError {
    match find_error(path, source) {
        Ok(Some(error)) => error,
        // serde_json takes what the fast path did not: the file changed between the reads.
        Ok(None) => DataError::Changed { path: path.into() },
        Err(source) => DataError::Io {
            path: path.into(),
            source,
        },
    }
}

fn find_error<R: Read + Seek>(path: &Path, mut source: R) -> std::io::Result<Option<DataError>> {
    source.rewind()?;
    let first = first_non_whitespace(&mut source)?;
    source.rewind()?;
    let reader = std::io::BufReader::with_capacity(64 * 1024, source);
    let mut de = serde_json::Deserializer::from_reader(reader);
    if first != Some(b'[') {
        if let Err(e) = IgnoredAny::deserialize(&mut de).and_then(|_| de.end()) {
            return syntax_or_io(path, e).map(Some);
        }
        let found = match first {
            Some(b'{') => "an object",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        };
        return Ok(Some(DataError::NotAnArray {
            path: path.into(),
            found,
        }));
    }
    let first_bad = de.deserialize_seq(FirstBadElement { path });
    match first_bad.and_then(|bad| de.end().map(|()| bad)) {
        Ok(bad) => Ok(bad),
        Err(e) => syntax_or_io(path, e).map(Some),
    }
}

fn first_non_whitespace<R: Read>(source: R) -> std::io::Result<Option<u8>> {
    for byte in std::io::BufReader::new(source).bytes() {
        let byte = byte?;
        if !matches!(byte, b' ' | b'\t' | b'\n' | b'\r') {
            return Ok(Some(byte));
        }
    }
    Ok(None)
}

fn syntax_or_io(path: &Path, e: serde_json::Error) -> std::io::Result<DataError> {
    if e.is_io() {
        return Err(e.into());
    }
    Ok(syntax(path, &e))
}

/// Visits the array's elements one at a time; its value is the first element that is not a
/// record with a numeric `time`, if any.
struct FirstBadElement<'p> {
    path: &'p Path,
}

impl<'de> serde::de::Visitor<'de> for FirstBadElement<'_> {
    type Value = Option<DataError>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut first_bad = None;
        let mut index = 0;
        while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
            if first_bad.is_none() {
                first_bad = record_time(self.path, index, raw.get()).err();
            }
            index += 1;
        }
        Ok(first_bad)
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
fn record_time(path: &Path, index: usize, raw: &str) -> Result<f64, DataError> {
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
    if !raw.starts_with('{') {
        return Err(DataError::NotAnObject {
            path: path.into(),
            index,
        });
    }
    // The array already parsed, so the only failure left is a field repeated (`time` twice).
    let probe: TimeOnly<'_> = serde_json::from_str(raw).map_err(|e| DataError::BadTime {
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
        let dataset = load_file(&file, name)?;
        tracing::info!(file = %file.listed.display(), records = dataset.len(), "loaded");
        datasets.push(dataset);
    }
    Ok(datasets)
}

/// Reads one file; refuses it if it changed meanwhile (it is read twice, see [`Dataset::read`]).
fn load_file(file: &JsonFile, name: String) -> Result<Dataset, DataError> {
    let io = || io_error(&file.listed);
    let mut source = std::fs::File::open(&file.read_from).map_err(io())?;
    let before = Stamp::of(&source).map_err(io())?;
    let dataset = Dataset::read(&file.listed, name, &mut source, READ_CHUNK)?;
    if Stamp::of(&source).map_err(io())? != before {
        return Err(DataError::Changed {
            path: file.listed.clone(),
        });
    }
    Ok(dataset)
}

/// What tells a file was written to: its size, modification and change times. A rewrite of
/// the same length within one tick of the file system's clock (a few ms) is not seen; the
/// element count and every element's compact length are compared too.
#[derive(Debug, PartialEq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    changed_secs: i64,
    changed_nanos: i64,
}

impl Stamp {
    fn of(file: &std::fs::File) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata()?;
        Ok(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            changed_secs: meta.ctime(),
            changed_nanos: meta.ctime_nsec(),
        })
    }
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

/// An I/O error on `path`; builds the path only when there is an error (unlike [`io_error`]).
fn io(path: &Path, source: std::io::Error) -> DataError {
    DataError::Io {
        path: path.into(),
        source,
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataError {
    let path = path.to_path_buf();
    move |source| DataError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::compact_into;

    fn parse(text: &str) -> Result<Dataset, DataError> {
        Dataset::parse(Path::new("t.json"), "t".into(), text.as_bytes())
    }

    fn read(text: &[u8], chunk: usize) -> Result<Dataset, DataError> {
        Dataset::read(
            Path::new("t.json"),
            "t".into(),
            std::io::Cursor::new(text),
            chunk,
        )
    }

    /// The served bytes as serde_json reads the whole file: the array's elements (each must
    /// be an object with exactly one `time`, which serde_json reads as a number), stably
    /// sorted by `time`, compacted; `None` if serde_json refuses the file or an element.
    fn oracle(text: &[u8]) -> Option<Vec<u8>> {
        let elements: Vec<&RawValue> = serde_json::from_slice(text).ok()?;
        let mut keyed = Vec::new();
        for raw in elements {
            let Entries(entries) = serde_json::from_str(raw.get()).ok()?;
            let mut times = entries.iter().filter(|(key, _)| key == "time");
            let time = times.next()?;
            if times.next().is_some() {
                return None;
            }
            keyed.push((serde_json::from_str::<f64>(time.1.get()).ok()?, raw));
        }
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut out = Vec::new();
        for (_, raw) in keyed {
            compact_into(raw.get().as_bytes(), &mut out);
            out.push(b'\n');
        }
        Some(out)
    }

    /// An object's entries in file order, repeated keys kept.
    struct Entries(Vec<(String, Box<RawValue>)>);

    impl<'de> Deserialize<'de> for Entries {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Entries;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Entries, A::Error> {
                    let mut entries = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        entries.push(entry);
                    }
                    Ok(Entries(entries))
                }
            }
            d.deserialize_map(V)
        }
    }

    /// Records with escapes, multi-byte UTF-8, nesting, odd whitespace, equal and negative
    /// times, out of order.
    fn tricky() -> String {
        [
            "\r\n [\t{\"time\": 5, \"s\": \"a \\\" ] } \\\\\", \"n\": [1, {\"x\": []}]}",
            " ,\n{ \"id\":1,\"time\":-1.5e1,\"u\":\"\u{e9}t\u{e9} \u{1f600} \\u00e9\"}",
            ",{\"time\": 5.0 , \"id\" : 2}",
            ",{\"id\":3,\"time\":0,\"k\":{\"time\":99}}",
            ",{\"time\":-0.0,\"id\":4},{\"time\": 5,\"id\":5,\"e\":\"\\n\\t\\/\"}",
            ",\n\n{\"time\":1e-3,\"v\":null,\"b\":true,\"f\":false,\"big\":123456789012345678901234567890}\n]\n",
        ]
        .concat()
    }

    #[test]
    fn every_chunk_size_serves_what_serde_json_reads() {
        let text = tricky();
        let expected = oracle(text.as_bytes()).expect("valid test data");
        for chunk in 1..=text.len() + 1 {
            let d = read(text.as_bytes(), chunk).unwrap();
            assert_eq!(d.lines(0, d.len()), expected, "chunk {chunk}");
            assert_eq!(d.len(), 7);
        }
    }

    #[test]
    fn equal_times_keep_file_order_across_chunks() {
        let mut text = String::from("[");
        for i in 0..500 {
            let time = [3, 1, 2, 1][i % 4];
            let pad = " ".repeat(i % 7);
            text.push_str(&format!("{pad}{{\"i\":{i},{pad}\"time\":{time}}},"));
        }
        text.pop();
        text.push(']');
        let expected = oracle(text.as_bytes()).unwrap();
        for chunk in [1, 2, 3, 16, 17, 64, 4096] {
            assert_eq!(
                read(text.as_bytes(), chunk).unwrap().lines(0, 500),
                expected
            );
        }
    }

    proptest::proptest! {
        /// Any edit of valid data (a byte changed, removed or added) is served exactly as
        /// serde_json reads it, or refused when serde_json refuses it.
        #[test]
        fn edits_are_taken_or_refused_as_serde_json_does(
            at in 0usize..1000,
            edit in 0u8..3,
            byte in proptest::sample::select(b"{}[]\",:\\ \n0-.e5tx\xc3\xa9".to_vec()),
            chunk in 1usize..40,
        ) {
            let mut text = tricky().into_bytes();
            let at = at % text.len();
            match edit {
                0 => text[at] = byte,
                1 => { text.remove(at); }
                _ => text.insert(at, byte),
            }
            let got = read(&text, chunk);
            match oracle(&text) {
                Some(expected) => {
                    let d = got.unwrap();
                    proptest::prop_assert_eq!(d.lines(0, d.len()), expected);
                }
                None => proptest::prop_assert!(got.is_err(), "{:?}", String::from_utf8_lossy(&text)),
            }
        }
    }

    /// Errors are serde_json's for the whole file, whatever the chunk size.
    #[test]
    fn errors_name_what_serde_json_names() {
        // serde_json checks no nesting limit inside an element (it skips it without
        // recursing): neither does the loader.
        let deep = format!(
            "[{{\"time\":1,\"a\":{}1{}}}]",
            "[".repeat(300),
            "]".repeat(300)
        );
        assert_eq!(
            read(deep.as_bytes(), 7).unwrap().line(0),
            oracle(deep.as_bytes()).unwrap()
        );
        for text in [
            "\n\n [{\"time\":1} {\"time\":2}]",
            "[{\"time\":1},\n]",
            "[{\"time\":1}]\n x",
            "[{\"time\":1, \"s\":\"\\q\"}]",
        ] {
            let whole = serde_json::from_str::<Vec<&RawValue>>(text).unwrap_err();
            for chunk in [1, 5, 4096] {
                match read(text.as_bytes(), chunk) {
                    Err(DataError::Syntax {
                        line,
                        column,
                        reason,
                        ..
                    }) => {
                        assert_eq!((line, column), (whole.line(), whole.column()), "{text:?}");
                        assert!(whole.to_string().starts_with(&reason), "{reason} / {whole}");
                    }
                    other => panic!("{text:?}: {other:?}"),
                }
            }
        }
        // A syntax error after a bad element is still reported first.
        assert!(matches!(
            read(b"[{\"x\":1}, {\"time\":1},]", 3),
            Err(DataError::Syntax { .. })
        ));
        assert!(matches!(
            read(b"[{\"time\":1}, {\"time\":1, \"time\":2}]", 3),
            Err(DataError::BadTime { index: 1, .. })
        ));
        assert!(matches!(
            read(b"[{\"time\":1}, {\"time\":\"\xff\"}]", 3),
            Err(DataError::Syntax { .. })
        ));
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
