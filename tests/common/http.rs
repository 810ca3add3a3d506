//! HTTP over real sockets: a small hyper client, NDJSON bodies, the real API served
//! in-process, and free ports.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::TEST_TIMEOUT;

/// A real HTTP/1.1 GET; returns the response with its body still streaming.
pub async fn http_get(addr: SocketAddr, path_and_query: &str) -> hyper::Response<Incoming> {
    let fut = async {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        let req = hyper::Request::get(path_and_query)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(req).await.expect("request")
    };
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("GET timed out")
}

/// A GET whose whole body is read: (status, content type, body).
pub async fn http_get_body(addr: SocketAddr, path_and_query: &str) -> (u16, String, Bytes) {
    let response = http_get(addr, path_and_query).await;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = tokio::time::timeout(TEST_TIMEOUT, response.into_body().collect())
        .await
        .expect("body timed out")
        .expect("body")
        .to_bytes();
    (status, content_type, body)
}

/// The NDJSON lines of a body, each parsed.
pub fn ndjson(body: &[u8]) -> Vec<serde_json::Value> {
    assert!(
        body.is_empty() || body.ends_with(b"\n"),
        "NDJSON must end in a newline"
    );
    body.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("each line is JSON"))
        .collect()
}

/// Starts the real `serve-api` server in-process on 127.0.0.1:0 over `dir`.
pub async fn start_api(
    dir: &Path,
    delay: Duration,
) -> (
    SocketAddr,
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    use factorypal::api::{Catalog, load_dir, serve};
    let catalog = Catalog::new(load_dir(dir).unwrap(), delay);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(serve(listener, catalog, shutdown.clone()));
    (addr, shutdown, task)
}

/// A port that was free a moment ago (for servers that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
