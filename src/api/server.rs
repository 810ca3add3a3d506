//! The HTTP side of `serve-api`: routes, query parameters and the NDJSON stream.
//!
//! Pacing: with a delay, record k of a response is due `k × delay` after its first, and one
//! the server is late for goes out at once with any others due, so a stream keeps its rate
//! on average (1 ms gives 1,000 records/s) where a sleep after each record would add the
//! timer's lateness to every gap. `stamp=FIELD` adds the send time to every record, so a
//! benchmark can tell each record's latency downstream (scripts/bench-latency.sh).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::data::Dataset;
use crate::excerpt::Excerpt;
use crate::http::{Body, Limits, json_response, reject_method};

/// With no delay, lines go out in chunks of about this size: big enough that per-chunk overhead
/// vanishes, small enough to keep per-client memory flat.
const CHUNK_BYTES: usize = 64 * 1024;

/// Largest `delay` a request may ask for; more is surely a typo (milliseconds for seconds).
const MAX_DELAY_SECS: f64 = 3600.0;

/// Longest `stamp` field name.
const MAX_STAMP_FIELD: usize = 64;

pub const STREAM_PREFIX: &str = "/stream_data_";

/// What serve-api serves and how: the files, the default delay, and the connection limits
/// ([`Limits::default`] unless [`Catalog::with_limits`] says otherwise).
#[derive(Debug, Clone)]
pub struct Catalog {
    datasets: Arc<BTreeMap<String, Arc<Dataset>>>,
    delay: Duration,
    limits: Limits,
}

impl Catalog {
    pub fn new(datasets: Vec<Dataset>, delay: Duration) -> Self {
        let datasets = datasets
            .into_iter()
            .map(|d| (d.name.clone(), Arc::new(d)))
            .collect();
        Self {
            datasets: Arc::new(datasets),
            delay,
            limits: Limits::default(),
        }
    }

    pub fn with_limits(self, limits: Limits) -> Self {
        Self { limits, ..self }
    }

    pub fn paths(&self) -> Vec<String> {
        self.datasets
            .keys()
            .map(|name| format!("{STREAM_PREFIX}{name}"))
            .collect()
    }

    fn endpoints_json(&self) -> serde_json::Value {
        self.datasets
            .iter()
            .map(|(name, d)| json!({"path": format!("{STREAM_PREFIX}{name}"), "records": d.len()}))
            .collect()
    }
}

/// Serves the catalog on `listener` until `shutdown` is cancelled; then every open stream ends
/// (as an error, see [`Body`]) and the server returns once the connections closed.
pub async fn serve(listener: TcpListener, catalog: Catalog, shutdown: CancellationToken) {
    let limits = catalog.limits;
    let route = {
        let shutdown = shutdown.clone();
        move |req: &Request<Incoming>| route(&catalog, req, &shutdown)
    };
    crate::http::serve(listener, route, limits, shutdown).await;
}

fn route(
    catalog: &Catalog,
    req: &Request<Incoming>,
    shutdown: &CancellationToken,
) -> Response<Body> {
    if let Some(rejected) = reject_method(req) {
        return rejected;
    }
    let path = req.uri().path();
    if path == "/" {
        return json_response(
            StatusCode::OK,
            &json!({"endpoints": catalog.endpoints_json()}),
        );
    }
    if path == "/healthz" {
        return json_response(StatusCode::OK, &json!({"status": "ok"}));
    }
    let dataset = path
        .strip_prefix(STREAM_PREFIX)
        .and_then(|name| catalog.datasets.get(name));
    let Some(dataset) = dataset else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({
                "error": format!("no endpoint at {}", Excerpt(path)),
                "endpoints": catalog.paths(),
            }),
        );
    };
    match StreamParams::parse(req.uri().query(), dataset.len(), catalog.delay) {
        Ok(params) => stream_response(Arc::clone(dataset), params, shutdown.clone()),
        Err(message) => json_response(StatusCode::BAD_REQUEST, &json!({"error": message})),
    }
}

/// What one stream request asked for.
#[derive(Debug, Clone, PartialEq)]
struct StreamParams {
    from: usize,
    to: usize,
    delay: Duration,
    /// `stamp=FIELD`: every record gets `"FIELD": <unix seconds when sent>` as its last member.
    stamp: Option<String>,
}

impl StreamParams {
    fn parse(query: Option<&str>, len: usize, default_delay: Duration) -> Result<Self, String> {
        let mut offset = 0usize;
        let mut limit = usize::MAX;
        let mut delay = default_delay;
        let mut stamp = None;
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "offset" => {
                    offset = value.parse().map_err(|_| {
                        format!(
                            "offset={} is not valid: expected a record index from 0 to {len}",
                            Excerpt(value)
                        )
                    })?
                }
                "limit" => {
                    limit = value.parse().map_err(|_| {
                        format!(
                            "limit={} is not valid: expected a non-negative record count",
                            Excerpt(value)
                        )
                    })?
                }
                "delay" => delay = value
                    .parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && (0.0..=MAX_DELAY_SECS).contains(d))
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        format!(
                            "delay={} is not valid: expected seconds from 0 to {MAX_DELAY_SECS}",
                            Excerpt(value)
                        )
                    })?,
                "stamp" => stamp = Some(stamp_field(value)?),
                other => {
                    return Err(format!(
                        "unknown query parameter {}: use offset, limit, delay or stamp",
                        Excerpt(other)
                    ));
                }
            }
        }
        if offset > len {
            return Err(format!(
                "offset={offset} is past the end: this stream has {len} records"
            ));
        }
        Ok(Self {
            from: offset,
            to: offset.saturating_add(limit).min(len),
            delay,
            stamp,
        })
    }
}

/// A `stamp` field name: letters, digits and `_` only, so it needs no JSON escaping.
fn stamp_field(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= MAX_STAMP_FIELD
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if value == "time" {
        // Every record has a `time`: a second one would shadow it for any reader.
        return Err(
            "stamp=time would add a second `time` to every record: name a new field, e.g. \
             stamp=sent_at"
                .to_string(),
        );
    }
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!(
            "stamp={} is not valid: expected a field name of letters, digits and _ (at most \
             {MAX_STAMP_FIELD}), e.g. stamp=sent_at",
            Excerpt(value)
        ))
    }
}

/// The state of one client's stream; dropped (and so stopped) when the client disconnects.
struct StreamState {
    dataset: Arc<Dataset>,
    next: usize,
    params: StreamParams,
    /// When the first record went out: the origin of the delay's schedule.
    started: Option<tokio::time::Instant>,
    shutdown: CancellationToken,
}

impl StreamState {
    async fn next_chunk(mut self) -> Option<(Result<Frame<Bytes>, std::io::Error>, Self)> {
        if self.next >= self.params.to {
            return None;
        }
        if self.shutdown.is_cancelled() {
            return Some((Err(shutting_down()), self));
        }
        let due = if self.params.delay.is_zero() {
            self.params.to
        } else {
            match self.next_turn().await {
                Some(due) => due,
                None => return Some((Err(shutting_down()), self)),
            }
        };
        let end = self.dataset.batch_end(self.next, due, CHUNK_BYTES);
        let chunk = match &self.params.stamp {
            Some(field) => stamped(&self.dataset, self.next, end, field),
            None => self.dataset.lines(self.next, end),
        };
        self.next = end;
        Some((Ok(Frame::data(chunk)), self))
    }

    /// Waits until the next record is due (record k at `k × delay` after the first) and
    /// returns the end of the records due by then, at least one; `None` on shutdown.
    async fn next_turn(&mut self) -> Option<usize> {
        let delay = self.params.delay;
        let started = *self.started.get_or_insert_with(tokio::time::Instant::now);
        // At most an hour × the records in memory: far inside a `Duration`.
        let sent = (self.next - self.params.from) as f64;
        tokio::select! {
            _ = tokio::time::sleep_until(started + delay.mul_f64(sent)) => {}
            _ = self.shutdown.cancelled() => return None,
        }
        let due = (started.elapsed().as_secs_f64() / delay.as_secs_f64()) as usize + 1;
        Some(
            self.params
                .from
                .saturating_add(due)
                .clamp(self.next + 1, self.params.to),
        )
    }
}

/// Lines `from..to`, each with `"field":SECS` added as its last member: the unix time now,
/// to the microsecond (the lines are compact JSON objects, each ending in `}\n`).
fn stamped(dataset: &Dataset, from: usize, to: usize, field: &str) -> Bytes {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let member = format!(
        "\"{field}\":{}.{:06}}}\n",
        now.as_secs(),
        now.subsec_micros()
    );
    let mut out = BytesMut::new();
    for index in from..to {
        let line = dataset.line(index);
        match line.strip_suffix(b"}\n") {
            Some(open) => {
                out.put_slice(open);
                if open != b"{" {
                    out.put_u8(b',');
                }
                out.put_slice(member.as_bytes());
            }
            None => out.put_slice(&line),
        }
    }
    out.freeze()
}

fn shutting_down() -> std::io::Error {
    std::io::Error::other("serve-api is shutting down")
}

fn stream_response(
    dataset: Arc<Dataset>,
    params: StreamParams,
    shutdown: CancellationToken,
) -> Response<Body> {
    let state = StreamState {
        dataset,
        next: params.from,
        params,
        started: None,
        shutdown,
    };
    let stream = futures::stream::unfold(state, StreamState::next_chunk);
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/x-ndjson")
        .header(CACHE_CONTROL, "no-store")
        .body(StreamBody::new(stream).boxed())
        .expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_millis(100);

    #[test]
    fn a_stamp_must_be_a_new_plain_field_name() {
        assert_eq!(stamp_field("sent_at"), Ok("sent_at".to_string()));
        for bad in ["time", "", "a-b", "\"x"] {
            assert!(stamp_field(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn params_default_to_the_whole_stream() {
        let p = StreamParams::parse(None, 10, D).unwrap();
        assert_eq!(
            p,
            StreamParams {
                from: 0,
                to: 10,
                delay: D,
                stamp: None,
            }
        );
    }

    #[test]
    fn params_offset_limit_delay() {
        let p = StreamParams::parse(Some("offset=3&limit=4&delay=0"), 10, D).unwrap();
        assert_eq!(
            p,
            StreamParams {
                from: 3,
                to: 7,
                delay: Duration::ZERO,
                stamp: None,
            }
        );
        let p = StreamParams::parse(Some("offset=10"), 10, D).unwrap();
        assert_eq!((p.from, p.to), (10, 10));
        let p = StreamParams::parse(Some("limit=100"), 10, D).unwrap();
        assert_eq!(p.to, 10);
        let p = StreamParams::parse(Some("stamp=sent_at"), 10, D).unwrap();
        assert_eq!(p.stamp.as_deref(), Some("sent_at"));
    }

    /// A stream with a delay keeps its schedule (record k at k × delay): after a stall of
    /// 100 delays (a client that read nothing, a busy server), the records due meanwhile go
    /// out together at once rather than each a delay after the one before. (No time is
    /// asserted: a sleep of 100 ms lasts at least that, so at least 100 records are due.)
    #[tokio::test]
    async fn a_paced_stream_sends_what_fell_due_during_a_stall_at_once() {
        let text = format!(
            "[{}]",
            (0..300)
                .map(|n| format!(r#"{{"time":{n}}}"#))
                .collect::<Vec<_>>()
                .join(",")
        );
        let path = std::path::Path::new("t.json");
        let dataset = Dataset::parse(path, "t".into(), text.as_bytes()).unwrap();
        let params = StreamParams::parse(Some("delay=0.001"), dataset.len(), D).unwrap();
        let mut state = StreamState {
            dataset: Arc::new(dataset),
            next: 0,
            params,
            started: None,
            shutdown: CancellationToken::new(),
        };
        let (mut records, mut stalled, mut after_stall) = (0, false, None);
        while let Some((chunk, next)) = state.next_chunk().await {
            let chunk = chunk.unwrap().into_data().unwrap();
            let lines = chunk.iter().filter(|&&b| b == b'\n').count();
            records += lines;
            if stalled && after_stall.is_none() {
                after_stall = Some(lines);
            }
            if !stalled && records >= 10 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                stalled = true;
            }
            state = next;
        }
        assert_eq!(records, 300);
        let after_stall = after_stall.unwrap();
        assert!(
            after_stall >= 100,
            "records due during the stall: {after_stall}"
        );
    }

    #[test]
    fn params_reject_bad_values() {
        for q in [
            "offset=-1",
            "offset=x",
            "offset=11",
            "limit=1.5",
            "delay=-1",
            "delay=nan",
            "delay=1e9",
            "stamp=",
            "stamp=a\"b",
            "stamp=sent-at",
            "foo=1",
        ] {
            assert!(
                StreamParams::parse(Some(q), 10, D).is_err(),
                "{q} should be rejected"
            );
        }
    }
}
