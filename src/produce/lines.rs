//! Cuts the bytes of an NDJSON body into lines, in time linear in the bytes and in memory
//! bounded by `producer.max_line_bytes` (plus one frame).
//!
//! Two things keep it so, whatever the source sends:
//! - **Each byte is searched for `\n` once.** A partial line waits in the buffer for the next
//!   frame; the search resumes where the last one stopped, not at the start of the buffer
//!   (which made a 20 MB line cost seconds, quadratic in its length).
//! - **A line longer than the limit is not buffered.** Once the buffered part of a line passes
//!   `max_line_bytes`, the splitter reports it as [`Piece::TooLong`] at once (the caller counts
//!   it as a bad record at its source-offset), drops what it holds, and from then on discards
//!   incoming bytes up to the next `\n` without keeping them. A line that never ends costs a
//!   bounded buffer, not all the memory there is.
//!
//! Blank lines are keep-alives that no one numbers, whatever their length: an overlong line
//! is reported only once a byte other than whitespace shows in it, so a long run of spaces
//! cannot shift the source-offsets of the records after it.

use bytes::{Bytes, BytesMut};

/// What the splitter yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// A complete line, without its `\n`, at most `max_line_bytes` long.
    Line(Bytes),
    /// A line longer than `max_line_bytes`: `seen` bytes of it so far (all of it, if its `\n`
    /// had already arrived). Its bytes are gone, and the rest, up to its `\n`, is discarded.
    TooLong { seen: usize },
}

/// Lines out of a stream of byte frames. See the module docs.
#[derive(Debug)]
pub struct LineSplitter {
    buf: BytesMut,
    /// The first `scanned` bytes of `buf` hold no `\n`.
    scanned: usize,
    max_line_bytes: usize,
    /// Inside an overlong line: bytes up to its `\n` are dropped.
    discarding: bool,
    /// The overlong line being discarded has held only whitespace so far (this many bytes):
    /// not reported unless something else arrives before its `\n`.
    blank_seen: Option<usize>,
    /// An overlong line found while discarding, reported by the next [`Self::next_piece`].
    pending: Option<usize>,
    /// Bytes searched for `\n` so far, for the linearity test.
    #[cfg(test)]
    searched: usize,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(64 * 1024),
            scanned: 0,
            max_line_bytes,
            discarding: false,
            blank_seen: None,
            pending: None,
            #[cfg(test)]
            searched: 0,
        }
    }

    /// Takes the next frame of the body. Call [`Self::next_piece`] until `None` before the
    /// next push, so the buffer never holds more than a line's limit and one frame.
    pub fn push(&mut self, data: &[u8]) {
        if !self.discarding {
            self.buf.extend_from_slice(data);
            return;
        }
        let end = find_newline(data);
        let part = &data[..end.unwrap_or(data.len())];
        if let Some(seen) = self.blank_seen {
            let seen = seen + part.len();
            if part.iter().all(u8::is_ascii_whitespace) {
                self.blank_seen = Some(seen);
            } else {
                self.blank_seen = None;
                self.pending = Some(seen);
            }
        }
        // Without a `\n` the whole frame belongs to the overlong line.
        if let Some(end) = end {
            self.discarding = false;
            self.blank_seen = None;
            self.buf.extend_from_slice(&data[end + 1..]);
        }
    }

    /// The next complete line, or the report of an overlong one; `None` until more arrives.
    pub fn next_piece(&mut self) -> Option<Piece> {
        if let Some(seen) = self.pending.take() {
            return Some(Piece::TooLong { seen });
        }
        #[cfg(test)]
        {
            let unsearched = &self.buf[self.scanned..];
            self.searched += find_newline(unsearched).map_or(unsearched.len(), |at| at + 1);
        }
        match find_newline(&self.buf[self.scanned..]) {
            Some(at) => {
                let end = self.scanned + at;
                self.scanned = 0;
                let line = self.buf.split_to(end + 1).freeze().slice(..end);
                // A blank line of any length is handed on as one: the caller skips it unnumbered.
                let blank = line.iter().all(u8::is_ascii_whitespace);
                if line.len() > self.max_line_bytes && !blank {
                    return Some(Piece::TooLong { seen: line.len() });
                }
                Some(Piece::Line(line))
            }
            None => {
                self.scanned = self.buf.len();
                if self.buf.len() <= self.max_line_bytes {
                    return None;
                }
                let seen = self.buf.len();
                let blank = self.buf.iter().all(u8::is_ascii_whitespace);
                self.clear();
                self.discarding = true;
                if blank {
                    self.blank_seen = Some(seen);
                    return None;
                }
                Some(Piece::TooLong { seen })
            }
        }
    }

    /// Whether nothing but whitespace waits for its `\n`, and no overlong line is open: the
    /// body may end here.
    pub fn at_line_end(&self) -> bool {
        !self.in_overlong_line() && self.buf.iter().all(u8::is_ascii_whitespace)
    }

    /// Whether the bytes coming are the rest of a line already reported as too long.
    pub fn in_overlong_line(&self) -> bool {
        self.discarding && self.blank_seen.is_none()
    }

    /// Bytes of an unfinished line waiting for their `\n`.
    pub fn partial_len(&self) -> usize {
        self.buf.len()
    }

    /// Forgets everything: the connection broke, the next one starts at a line boundary.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.discarding = false;
        self.blank_seen = None;
        self.pending = None;
    }
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut LineSplitter) -> Vec<Piece> {
        std::iter::from_fn(|| s.next_piece()).collect()
    }

    fn line(text: &str) -> Piece {
        Piece::Line(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn lines_across_frames() {
        let mut s = LineSplitter::new(100);
        s.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(drain(&mut s), [line("{\"a\":1}")]);
        s.push(b":2}");
        assert_eq!(drain(&mut s), []);
        assert!(!s.at_line_end());
        s.push(b"\n\n");
        assert_eq!(drain(&mut s), [line("{\"b\":2}"), line("")]);
        assert!(s.at_line_end());
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_discarded_up_to_its_newline() {
        let mut s = LineSplitter::new(10);
        s.push(b"ok\n0123456789");
        assert_eq!(drain(&mut s), [line("ok")]);
        s.push(b"A");
        assert_eq!(drain(&mut s), [Piece::TooLong { seen: 11 }]);
        assert_eq!(s.partial_len(), 0);
        assert!(s.in_overlong_line());
        // The rest of it, however long, is dropped as it comes.
        for _ in 0..1000 {
            s.push(&[b'x'; 4096]);
            assert_eq!(drain(&mut s), []);
            assert_eq!(s.partial_len(), 0);
            assert!(!s.at_line_end());
        }
        s.push(b"xx\nnext\n");
        assert_eq!(drain(&mut s), [line("next")]);
        assert!(s.at_line_end());
        assert!(!s.in_overlong_line());
    }

    #[test]
    fn an_overlong_line_in_one_frame_is_reported_with_its_length() {
        let mut s = LineSplitter::new(4);
        s.push(b"12345\nabcd\n");
        assert_eq!(drain(&mut s), [Piece::TooLong { seen: 5 }, line("abcd")]);
    }

    #[test]
    fn an_overlong_blank_line_is_a_keep_alive_not_a_bad_line() {
        // Whole in one frame: handed on as a blank line, which the reader skips unnumbered.
        let mut s = LineSplitter::new(4);
        s.push(
            b"       
{}
",
        );
        assert_eq!(drain(&mut s), [line("       "), line("{}")]);
        // Across frames: never reported, and the stream may end inside it.
        let mut s = LineSplitter::new(4);
        s.push(b"      ");
        assert_eq!(drain(&mut s), []);
        assert!(!s.in_overlong_line());
        assert!(s.at_line_end());
        s.push(
            b"   	  
{}
",
        );
        assert_eq!(drain(&mut s), [line("{}")]);
    }

    #[test]
    fn an_overlong_line_that_starts_blank_is_reported_once_something_else_shows() {
        let mut s = LineSplitter::new(4);
        s.push(b"      ");
        assert_eq!(drain(&mut s), []);
        s.push(b"   x  ");
        assert_eq!(drain(&mut s), [Piece::TooLong { seen: 12 }]);
        assert!(s.in_overlong_line());
        s.push(
            b"yy
{}
",
        );
        assert_eq!(drain(&mut s), [line("{}")]);
    }

    #[test]
    fn clear_ends_a_discard() {
        let mut s = LineSplitter::new(2);
        s.push(b"abc");
        assert_eq!(drain(&mut s), [Piece::TooLong { seen: 3 }]);
        s.clear();
        s.push(b"ok\n");
        assert_eq!(drain(&mut s), [line("ok")]);
    }

    /// Many small frames of one long line: each byte is searched for `\n` once, not once per
    /// frame that arrives while the line is incomplete.
    #[test]
    fn a_long_line_in_small_frames_is_searched_once() {
        let mut s = LineSplitter::new(usize::MAX);
        let frame = [b'x'; 1024];
        for _ in 0..4096 {
            s.push(&frame);
            assert_eq!(s.next_piece(), None);
        }
        s.push(b"\nnext\n");
        match s.next_piece() {
            Some(Piece::Line(l)) => assert_eq!(l.len(), 4096 * 1024),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.next_piece(), Some(line("next")));
        assert_eq!(s.next_piece(), None);
        assert_eq!(s.searched, 4096 * 1024 + "\nnext\n".len());
    }
}
