//! The HTTP side of `serve-api`: routes, query parameters and the NDJSON stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
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
#[derive(Debug, Clone, Copy, PartialEq)]
struct StreamParams {
    from: usize,
    to: usize,
    delay: Duration,
}

impl StreamParams {
    fn parse(query: Option<&str>, len: usize, default_delay: Duration) -> Result<Self, String> {
        let mut offset = 0usize;
        let mut limit = usize::MAX;
        let mut delay = default_delay;
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
                other => {
                    return Err(format!(
                        "unknown query parameter {}: use offset, limit or delay",
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
        })
    }
}

/// The state of one client's stream; dropped (and so stopped) when the client disconnects.
struct StreamState {
    dataset: Arc<Dataset>,
    next: usize,
    params: StreamParams,
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
        let chunk = if self.params.delay.is_zero() {
            let end = self
                .dataset
                .batch_end(self.next, self.params.to, CHUNK_BYTES);
            let chunk = self.dataset.lines(self.next, end);
            self.next = end;
            chunk
        } else {
            if self.next > self.params.from {
                tokio::select! {
                    _ = tokio::time::sleep(self.params.delay) => {}
                    _ = self.shutdown.cancelled() => return Some((Err(shutting_down()), self)),
                }
            }
            let line = self.dataset.line(self.next);
            self.next += 1;
            line
        };
        Some((Ok(Frame::data(chunk)), self))
    }
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
    fn params_default_to_the_whole_stream() {
        let p = StreamParams::parse(None, 10, D).unwrap();
        assert_eq!(
            p,
            StreamParams {
                from: 0,
                to: 10,
                delay: D
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
                delay: Duration::ZERO
            }
        );
        let p = StreamParams::parse(Some("offset=10"), 10, D).unwrap();
        assert_eq!((p.from, p.to), (10, 10));
        let p = StreamParams::parse(Some("limit=100"), 10, D).unwrap();
        assert_eq!(p.to, 10);
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
            "foo=1",
        ] {
            assert!(
                StreamParams::parse(Some(q), 10, D).is_err(),
                "{q} should be rejected"
            );
        }
    }
}
