//! Reads a data file's top-level JSON array one element at a time, through a buffer of fixed
//! size (grown only for an element longer than it), so loading never holds the whole file.
//!
//! The scanner only finds where each element starts and ends (brackets counted outside
//! strings) and counts its compact length; it does not validate JSON. Anything it does not
//! expect (an element that is not an object, a missing comma, trailing text) is an
//! [`Step::Anomaly`]: the caller then lets serde_json read the whole file to name the error.

use std::io::Read;

/// Bytes read from the file at a time.
pub const READ_CHUNK: usize = 1 << 20;

/// One element of the array: its bytes as in the file, and its length once compacted (without
/// whitespace outside strings).
#[derive(Debug)]
pub struct Element<'a> {
    pub raw: &'a [u8],
    pub compact_len: usize,
}

/// What [`Scanner::next`] found.
#[derive(Debug)]
pub enum Step<'a> {
    Element(Element<'a>),
    /// The array's `]` and only whitespace after it.
    End,
    /// Something the fast path does not handle; the file may still be valid JSON.
    Anomaly,
}

/// Where the scanner is in the array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before the `[`.
    Start,
    /// After `[`: an element or `]` comes next.
    First,
    /// After an element: `,` or `]` comes next.
    AfterElement,
    /// The array ended (or an anomaly was reported).
    Done,
}

/// A top-level array read element by element from `reader`.
pub struct Scanner<R> {
    reader: R,
    buf: Vec<u8>,
    /// `buf[pos..filled]` is read but not yet consumed.
    pos: usize,
    filled: usize,
    eof: bool,
    place: Place,
    chunk: usize,
}

impl<R: Read> Scanner<R> {
    /// A scanner reading `chunk` bytes at a time (tests use tiny chunks to put element
    /// boundaries everywhere).
    pub fn with_chunk(reader: R, chunk: usize) -> Self {
        let chunk = chunk.max(1);
        Self {
            reader,
            buf: vec![0; chunk],
            pos: 0,
            filled: 0,
            eof: false,
            place: Place::Start,
            chunk,
        }
    }

    /// The next element, the end of the array, or an anomaly.
    pub fn next(&mut self) -> std::io::Result<Step<'_>> {
        self.step::<false>(&mut Vec::new())
    }

    /// [`Scanner::next`], also appending the element's compact form to `out` (in the same
    /// pass over its bytes).
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> std::io::Result<Step<'_>> {
        self.step::<true>(out)
    }

    fn step<const COPY: bool>(&mut self, out: &mut Vec<u8>) -> std::io::Result<Step<'_>> {
        loop {
            let Some(byte) = self.skip_whitespace()? else {
                return Ok(self.anomaly());
            };
            match (self.place, byte) {
                (Place::Start, b'[') => {
                    self.pos += 1;
                    self.place = Place::First;
                }
                (Place::AfterElement, b',') => {
                    self.pos += 1;
                    // A `,` must be followed by an element, not `]`.
                    return match self.skip_whitespace()? {
                        Some(b'{') => self.element::<COPY>(out),
                        _ => Ok(self.anomaly()),
                    };
                }
                (Place::First | Place::AfterElement, b']') => {
                    self.pos += 1;
                    self.place = Place::Done;
                    return Ok(match self.skip_whitespace()? {
                        None => Step::End,
                        Some(_) => Step::Anomaly,
                    });
                }
                (Place::First, b'{') => return self.element::<COPY>(out),
                _ => return Ok(self.anomaly()),
            }
        }
    }

    fn anomaly(&mut self) -> Step<'static> {
        self.place = Place::Done;
        Step::Anomaly
    }

    /// Skips whitespace; the next byte (not consumed), or `None` at the end of the file.
    fn skip_whitespace(&mut self) -> std::io::Result<Option<u8>> {
        loop {
            while self.pos < self.filled {
                let b = self.buf[self.pos];
                if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.refill()? {
                return Ok(None);
            }
        }
    }

    /// Reads more bytes after `filled`, first moving the unconsumed `buf[pos..filled]` to the
    /// front and growing `buf` if that part fills it. False at the end of the file.
    fn refill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() - self.filled < self.chunk {
            self.buf.resize(self.filled + self.chunk, 0);
        }
        loop {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.filled += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The object starting at `pos` (a `{`), up to its matching `}`; compacted into `out` if
    /// `COPY`.
    fn element<const COPY: bool>(&mut self, out: &mut Vec<u8>) -> std::io::Result<Step<'_>> {
        let mut state = ObjectScan::default();
        // `scanned` bytes of the element are already looked at; a refill moves the element to
        // the front of the buffer, so offsets are kept relative to its start.
        let mut scanned = 0;
        loop {
            let start = self.pos;
            match state.feed::<COPY>(&self.buf[start + scanned..self.filled], out) {
                Feed::Closed(used) => {
                    let end = start + scanned + used;
                    self.pos = end;
                    self.place = Place::AfterElement;
                    let compact_len = state.compact_len;
                    return Ok(Step::Element(Element {
                        raw: &self.buf[start..end],
                        compact_len,
                    }));
                }
                Feed::More => {
                    scanned = self.filled - start;
                    if !self.refill()? {
                        return Ok(self.anomaly());
                    }
                }
            }
        }
    }
}

/// The scan of one object so far: nesting, string state and compact length.
#[derive(Debug, Default)]
struct ObjectScan {
    depth: usize,
    in_string: bool,
    escaped: bool,
    compact_len: usize,
}

/// What [`ObjectScan::feed`] saw in its bytes.
enum Feed {
    /// The object closed after this many of the bytes.
    Closed(usize),
    /// All bytes used; the object goes on.
    More,
}

impl ObjectScan {
    /// Scans `bytes`, appending what is not insignificant whitespace to `out` if `COPY`.
    fn feed<const COPY: bool>(&mut self, bytes: &[u8], out: &mut Vec<u8>) -> Feed {
        for (i, &b) in bytes.iter().enumerate() {
            if self.in_string {
                self.compact_len += 1;
                if COPY {
                    out.push(b);
                }
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\n' | b'\r' => continue,
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    // Mismatched brackets are left to serde_json's validation of the element.
                    self.depth -= 1;
                    if self.depth == 0 {
                        self.compact_len += 1;
                        if COPY {
                            out.push(b);
                        }
                        return Feed::Closed(i + 1);
                    }
                }
                _ => {}
            }
            self.compact_len += 1;
            if COPY {
                out.push(b);
            }
        }
        Feed::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every step as text (each element's compact length checked): elements, then "end" or "anomaly".
    fn steps(text: &str, chunk: usize) -> Vec<String> {
        let mut scanner = Scanner::with_chunk(text.as_bytes(), chunk);
        let mut out = Vec::new();
        let mut compacted = Vec::new();
        loop {
            compacted.clear();
            match scanner.next_into(&mut compacted).unwrap() {
                Step::Element(e) => {
                    let mut compact = Vec::new();
                    crate::json::compact_into(e.raw, &mut compact);
                    assert_eq!(e.compact_len, compact.len());
                    assert_eq!(compacted, compact);
                    out.push(std::str::from_utf8(e.raw).unwrap().to_string());
                }
                Step::End => {
                    out.push("end".into());
                    return out;
                }
                Step::Anomaly => {
                    out.push("anomaly".into());
                    return out;
                }
            }
        }
    }

    #[test]
    fn finds_elements_across_every_chunk_size() {
        let text = " [ {\"a\": \"}]\\\"{\" , \"b\":[1, {}]} ,\n{\"c\":\"é\"}]\n ";
        for chunk in 1..=text.len() + 1 {
            assert_eq!(
                steps(text, chunk),
                [
                    "{\"a\": \"}]\\\"{\" , \"b\":[1, {}]}",
                    "{\"c\":\"é\"}",
                    "end"
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn what_it_does_not_expect_is_an_anomaly() {
        for text in [
            "",
            "{}",
            "[1]",
            "[{},]",
            "[{} {}]",
            "[{}] x",
            "[{\"a\":1}",
            "[{\"a\":\"1}]",
            "[,{}]",
            "[{}]]",
        ] {
            assert_eq!(steps(text, 3).last().unwrap(), "anomaly", "{text:?}");
        }
        assert_eq!(steps("[]", 1), ["end"]);
    }
}
