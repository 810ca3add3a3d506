//! Reads one NDJSON stream over HTTP, line by line with each line's 0-based offset, and when the
//! connection drops, reconnects at `?offset=N` (the first line not yet read) with backoff.
//!
//! Every line of the format ends in `\n`, so a body that ends after a partial line was cut,
//! whatever HTTP says: a close-delimited response (no `Content-Length`, not chunked, as some
//! gateways send) that loses its connection looks like a clean end to HTTP. Such an end is a
//! drop like any other, and the partial line is read again after reconnecting.
//!
//! Lines are cut by a [`LineSplitter`]: linear in the bytes, and a line longer than
//! `producer.max_line_bytes` is reported ([`StreamItem::TooLong`]) and discarded as it streams
//! in, never buffered. It still occupies its offset, like any bad record.
//!
//! A `200` answer must look like NDJSON ([`accepts_content_type`]): an HTML page (a proxy's
//! error or login page) fails the source at once, rather than becoming a bad record per line.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::lines::{LineSplitter, Piece};
use super::url::StreamUrl;
use crate::backoff::{Retry, RetryPolicy};
use crate::excerpt::{self, Excerpt};
use crate::status::SourceCounters;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "source {source_name}: {url} answered {status}: {body}; check the source's path/url (and any user:password in it) in the config"
    )]
    Refused {
        source_name: String,
        /// Shown with its secrets masked.
        url: String,
        status: u16,
        /// The start of the answer, quoted through [`Excerpt`].
        body: String,
    },
    #[error(
        "source {source_name}: {url} answered 200 with content type {content_type}, not NDJSON (it starts {body}); this is likely an error or login page of a proxy in front of the API: check the source's path/url in the config, or what answers there"
    )]
    NotNdjson {
        source_name: String,
        /// Shown with its secrets masked.
        url: String,
        /// Quoted through [`Excerpt`].
        content_type: String,
        /// The start of the answer, quoted through [`Excerpt`].
        body: String,
    },
    #[error(
        "source {source_name}: gave up on {url} after {attempts} attempts over {outage:?} (producer.retry_deadline): {last_error}; is the API running?"
    )]
    GaveUp {
        source_name: String,
        /// Shown with its secrets masked.
        url: String,
        attempts: u32,
        outage: Duration,
        last_error: String,
    },
}

/// One line of the stream, without its `\n`.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub offset: u64,
    pub bytes: Bytes,
}

/// What the reader hands on: a line, or the report of one too long to read.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    Line(Line),
    /// A line longer than `producer.max_line_bytes` at `offset`: `seen` bytes of it had
    /// arrived when it was given up; the rest is discarded as it streams in.
    TooLong {
        offset: u64,
        seen: usize,
    },
}

/// How to reach a source and how patient to be with it.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    pub source_name: String,
    pub url: StreamUrl,
    pub retry: RetryPolicy,
    /// Without a byte for this long, the connection is dead.
    pub idle_timeout: Duration,
    /// `producer.max_line_bytes`.
    pub max_line_bytes: usize,
}

/// The reading side of one source. `next_item` hides reconnects: it returns every line once,
/// in order, or an error once the API has been unreachable for the retry deadline.
pub struct NdjsonReader {
    config: ReaderConfig,
    next_offset: u64,
    body: Option<Incoming>,
    lines: LineSplitter,
    ended: bool,
    /// No complete line yet on this connection: the first one ends the outage, if any. A
    /// connection that never delivers a whole line is no recovery (e.g. one cut mid-line
    /// every time), so its failures add up to the retry deadline.
    awaiting_first_line: bool,
    retry: Retry,
    shutdown: CancellationToken,
    /// Where reconnects show on the status page.
    counters: Option<Arc<SourceCounters>>,
}

impl NdjsonReader {
    pub fn new(config: ReaderConfig, start_offset: u64, shutdown: CancellationToken) -> Self {
        Self {
            next_offset: start_offset,
            body: None,
            lines: LineSplitter::new(config.max_line_bytes),
            ended: false,
            awaiting_first_line: false,
            retry: Retry::new(config.retry),
            config,
            shutdown,
            counters: None,
        }
    }

    /// Reports failures and recoveries of the stream to `counters`.
    pub fn reporting_to(mut self, counters: Arc<SourceCounters>) -> Self {
        self.counters = Some(counters);
        self
    }

    /// The next line (or overlong-line report), `None` at the end of the stream or on
    /// shutdown.
    pub async fn next_item(&mut self) -> Result<Option<StreamItem>, SourceError> {
        loop {
            if let Some(item) = self.next_buffered() {
                return Ok(Some(item));
            }
            if self.ended {
                if self.lines.at_line_end() {
                    return Ok(None);
                }
                // Every line ends in `\n`: this body was cut mid-line, not complete.
                let why = if self.lines.in_overlong_line() {
                    format!(
                        "the stream ended inside the overlong line at source-offset {} (a bad record already); reading on after it",
                        self.next_offset - 1
                    )
                } else {
                    format!(
                        "the stream ended inside the line at source-offset {} ({} bytes without their closing newline: the connection was cut, or the source does not end its last line with \\n)",
                        self.next_offset,
                        self.lines.partial_len()
                    )
                };
                self.ended = false;
                self.dropped(&why).await?;
                continue;
            }
            if self.body.is_none() && !self.connect().await? {
                return Ok(None);
            }
            if !self.read_frame().await? {
                return Ok(None);
            }
        }
    }

    /// The next item among the bytes already received, without waiting for more: `None`
    /// when the next one needs the network (or the stream has ended). Lets the caller do its
    /// per-record work without an `await`, and know when it is about to wait.
    pub fn next_buffered(&mut self) -> Option<StreamItem> {
        while let Some(piece) = self.lines.next_piece() {
            if let Some(item) = self.take(piece) {
                // Only a record counts: keep-alive blank lines on a connection that is cut
                // inside the same line every time must not reset the retry deadline.
                self.made_progress();
                return Some(item);
            }
        }
        None
    }

    /// Reads one frame of the body into the splitter (or notes its end, or handles a drop);
    /// `false` on shutdown.
    async fn read_frame(&mut self) -> Result<bool, SourceError> {
        let body = self.body.as_mut().expect("connected");
        let idle_timeout = self.config.idle_timeout;
        let frame = tokio::select! {
            _ = self.shutdown.cancelled() => return Ok(false),
            frame = tokio::time::timeout(idle_timeout, body.frame()) => frame,
        };
        match frame {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    self.lines.push(&data);
                }
            }
            Ok(None) => self.ended = true,
            Ok(Some(Err(error))) => self.dropped(&error.to_string()).await?,
            Err(_) => {
                let why = format!("no data for {idle_timeout:?} (producer.api_idle_timeout)");
                self.dropped(&why).await?
            }
        }
        Ok(true)
    }

    /// A complete line arrived: the first on a connection ends the current outage.
    fn made_progress(&mut self) {
        if std::mem::take(&mut self.awaiting_first_line) {
            self.retry.succeeded();
            if let Some(counters) = &self.counters {
                counters.trouble.recovered();
            }
        }
    }

    /// Numbers a line (or an overlong one: it occupies its offset too); blank lines are
    /// keep-alives, not records.
    fn take(&mut self, piece: Piece) -> Option<StreamItem> {
        let offset = self.next_offset;
        let item = match piece {
            Piece::Line(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => return None,
            Piece::Line(bytes) => StreamItem::Line(Line { offset, bytes }),
            Piece::TooLong { seen } => StreamItem::TooLong { offset, seen },
        };
        self.next_offset += 1;
        Some(item)
    }

    /// The connection broke mid-stream: forget the partial line, wait, and reconnect at the
    /// first line not yet returned.
    async fn dropped(&mut self, why: &str) -> Result<(), SourceError> {
        self.body = None;
        self.lines.clear();
        let wait = self.give_up_or_wait(why)?;
        tracing::warn!(source = %self.config.source_name, offset = self.next_offset, error = %why, retry_in = ?wait, "API stream dropped; reconnecting");
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
        Ok(())
    }

    fn give_up_or_wait(&mut self, why: &str) -> Result<Duration, SourceError> {
        let url = &self.config.url;
        if let Some(counters) = &self.counters {
            counters
                .trouble
                .failed(format!("API stream {url} failed: {why}"));
        }
        self.retry.failed().ok_or_else(|| SourceError::GaveUp {
            source_name: self.config.source_name.clone(),
            url: url.to_string(),
            attempts: self.retry.attempts(),
            outage: self.retry.outage(),
            last_error: why.to_string(),
        })
    }

    /// Opens the stream at `next_offset`, retrying until it answers 200; `false` on shutdown.
    async fn connect(&mut self) -> Result<bool, SourceError> {
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(false);
            }
            let idle_timeout = self.config.idle_timeout;
            let attempt = tokio::time::timeout(idle_timeout, self.request()).await;
            let error = match attempt {
                Ok(Ok(response)) if response.status() == 200 => {
                    if let Some(content_type) = refused_content_type(response.headers()) {
                        return Err(SourceError::NotNdjson {
                            source_name: self.config.source_name.clone(),
                            url: self.config.url.shown_at(self.next_offset).to_string(),
                            content_type,
                            body: read_small_body(response.into_body()).await,
                        });
                    }
                    self.body = Some(response.into_body());
                    self.awaiting_first_line = true;
                    return Ok(true);
                }
                Ok(Ok(response)) if response.status().is_client_error() => {
                    return Err(SourceError::Refused {
                        source_name: self.config.source_name.clone(),
                        url: self.config.url.shown_at(self.next_offset).to_string(),
                        status: response.status().as_u16(),
                        body: read_small_body(response.into_body()).await,
                    });
                }
                Ok(Ok(response)) => format!("status {}", response.status()),
                Ok(Err(error)) => error,
                Err(_) => format!("no answer within {idle_timeout:?}"),
            };
            let wait = self.give_up_or_wait(&error)?;
            tracing::warn!(source = %self.config.source_name, url = %self.config.url, error = %error, retry_in = ?wait, "cannot open API stream; retrying");
            tokio::select! {
                _ = self.shutdown.cancelled() => return Ok(false),
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn request(&self) -> Result<hyper::Response<Incoming>, String> {
        let url = &self.config.url;
        let stream = TcpStream::connect(url.authority())
            .await
            .map_err(|e| format!("connect to {}: {e}", url.authority()))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            // Errors surface through the response body; nothing to add here.
            let _ = conn.await;
        });
        let mut request = hyper::Request::get(url.target(self.next_offset))
            .header(hyper::header::HOST, url.authority())
            .header(hyper::header::ACCEPT, "application/x-ndjson");
        if let Some(authorization) = url.authorization() {
            request = request.header(hyper::header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The answer's `Content-Type`, quoted, if [`accepts_content_type`] refuses it; a missing one
/// is accepted (many a simple server sends none).
fn refused_content_type(headers: &hyper::HeaderMap) -> Option<String> {
    let value = headers.get(hyper::header::CONTENT_TYPE)?;
    let content_type = String::from_utf8_lossy(value.as_bytes());
    (!accepts_content_type(&content_type)).then(|| Excerpt(&content_type).to_string())
}

/// Whether a `200` answer with this `Content-Type` is read as NDJSON.
///
/// Lenient where a stream may plausibly be NDJSON under another name, strict where it plainly
/// is not:
/// - accepted: `application/x-ndjson` (what serve-api sends), `application/ndjson`,
///   `application/jsonl`, `application/x-jsonl`, `application/json-seq`, `application/json`
///   and any `+json` type (gateways label NDJSON as JSON), `text/plain`,
///   `application/octet-stream` (generic), and no `Content-Type` at all (see the caller);
/// - refused: anything else, above all `text/html` and XML: a proxy's error or login page
///   answered with `200`, which would otherwise become one bad record per line of HTML.
///
/// Parameters (`; charset=utf-8`) and case are ignored.
pub fn accepts_content_type(content_type: &str) -> bool {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        media_type.as_str(),
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonl"
            | "application/json-seq"
            | "application/json"
            | "text/plain"
            | "application/octet-stream"
            | ""
    ) || media_type.ends_with("+json")
}

/// The start of an error body, quoted for a message; never more than a few kB read.
async fn read_small_body(body: Incoming) -> String {
    let limited = http_body_util::Limited::new(body, 4096);
    match tokio::time::timeout(Duration::from_secs(2), limited.collect()).await {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            excerpt::bytes(bytes.trim_ascii())
        }
        _ => "nothing readable".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_and_json_like_types_are_read_html_is_not() {
        for ok in [
            "application/x-ndjson",
            "application/x-ndjson; charset=utf-8",
            "Application/JSON",
            "application/jsonl",
            "application/stream+json",
            "text/plain;charset=UTF-8",
            "application/octet-stream",
        ] {
            assert!(accepts_content_type(ok), "{ok}");
        }
        for refused in [
            "text/html",
            "text/html; charset=utf-8",
            "application/xhtml+xml",
            "text/xml",
            "image/png",
        ] {
            assert!(!accepts_content_type(refused), "{refused}");
        }
    }
}
