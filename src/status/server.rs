//! The status server behind `--status-bind`: `GET /` (the page), `/status` (JSON),
//! `/metrics` (Prometheus) and `/healthz`. It lives as long as the command it watches, and
//! keeps answering while that command shuts down.

use std::future::Future;
use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Status, metrics};
use crate::excerpt::Excerpt;
use crate::http::{Body, Limits, json_response, reject_method, text_response};

/// The page: plain HTML, CSS and script in one file, no external assets (plants run
/// air-gapped networks), rendering `/status` every few seconds.
const PAGE: &str = include_str!("page.html");

const ENDPOINTS: [&str; 4] = ["/", "/status", "/metrics", "/healthz"];

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(
        "cannot listen on {addr} for the status page: {source}; is another process using it? choose another address with --status-bind or status.bind"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl crate::failure::Classify for StatusError {
    fn is_usage(&self) -> bool {
        false
    }
}

/// How a command served with a status page ended badly: the page could not start, or the work
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum Served<E> {
    #[error(transparent)]
    Status(StatusError),
    #[error(transparent)]
    Work(E),
}

impl<E: crate::failure::Classify> crate::failure::Classify for Served<E> {
    fn is_usage(&self) -> bool {
        match self {
            Self::Status(error) => error.is_usage(),
            Self::Work(error) => error.is_usage(),
        }
    }
}

/// A running status server.
pub struct StatusServer {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl StatusServer {
    /// Binds `addr` (port 0 picks a free one) and serves `status` until [`StatusServer::stop`].
    pub async fn start(addr: SocketAddr, status: &Status) -> Result<Self, StatusError> {
        Self::start_with_limits(addr, status, Limits::default()).await
    }

    /// [`StatusServer::start`] within `limits` instead of the built-in ones (for tests, which
    /// check the limits work without holding hundreds of connections).
    pub async fn start_with_limits(
        addr: SocketAddr,
        status: &Status,
        limits: Limits,
    ) -> Result<Self, StatusError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StatusError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StatusError::Bind { addr, source })?;
        status.set_watched();
        tracing::info!(%addr, "status page at http://{addr}/ (JSON at /status, Prometheus at /metrics)");
        let stop = CancellationToken::new();
        let route = {
            let status = status.clone();
            move |req: &Request<Incoming>| route(&status, req)
        };
        let task = tokio::spawn(crate::http::serve(listener, route, limits, stop.clone()));
        Ok(Self { addr, stop, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Runs `work` with a status server on `bind` (none when `None`), stopping the server once
/// the work is done, whatever its outcome.
pub async fn serve_while<T, E>(
    bind: Option<SocketAddr>,
    status: &Status,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, Served<E>> {
    let server = match bind {
        Some(addr) => Some(
            StatusServer::start(addr, status)
                .await
                .map_err(Served::Status)?,
        ),
        None => None,
    };
    let result = work.await;
    if let Some(server) = server {
        server.stop().await;
    }
    result.map_err(Served::Work)
}

fn route(status: &Status, req: &Request<Incoming>) -> Response<Body> {
    if let Some(rejected) = reject_method(req) {
        return rejected;
    }
    match req.uri().path() {
        "/" => text_response(StatusCode::OK, "text/html; charset=utf-8", PAGE),
        "/status" => {
            let mut text =
                serde_json::to_string_pretty(&status.snapshot()).expect("the status serializes");
            text.push('\n');
            text_response(StatusCode::OK, "application/json", text)
        }
        "/metrics" => text_response(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            metrics::render(&status.snapshot()),
        ),
        "/healthz" => json_response(StatusCode::OK, &json!({"status": "ok"})),
        path => json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": format!("no endpoint at {}", Excerpt(path)), "endpoints": ENDPOINTS}),
        ),
    }
}
