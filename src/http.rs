//! The HTTP plumbing shared by the API (`serve-api`) and the status server: an accept loop with
//! a connection cap and graceful shutdown, and small response builders. Routing stays with
//! each server.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections served at once. Each costs one small task; the cap only stops a runaway client
/// from exhausting file descriptors. Further clients wait in the listen backlog.
const MAX_CONNECTIONS: usize = 4096;

/// How long open connections get to close after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A response body that may fail mid-way (a stream cut by shutdown ends as an error, so the
/// client sees a truncated response rather than a clean end).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Serves HTTP/1 on `listener`, answering each request with `route`, until `shutdown` is
/// cancelled; then stops accepting, asks open connections to finish, and returns once they
/// closed (or after a short grace period).
pub async fn serve<R>(listener: TcpListener, route: R, shutdown: CancellationToken)
where
    R: Fn(&Request<Incoming>) -> Response<Body> + Clone + Send + Sync + 'static,
{
    let connections = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("semaphore never closes"),
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors or a reset during the handshake: not fatal for the server.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let route = route.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let response = route(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// `405` for anything but GET and HEAD, which is all our servers answer.
pub fn reject_method(req: &Request<Incoming>) -> Option<Response<Body>> {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return None;
    }
    let mut response = json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({"error": format!("method {} is not allowed: use GET", req.method())}),
    );
    response
        .headers_mut()
        .insert(ALLOW, "GET, HEAD".parse().expect("valid header"));
    Some(response)
}

pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    let mut text = serde_json::to_string(body).expect("response bodies serialize");
    text.push('\n');
    text_response(status, "application/json", text)
}

/// A complete body of `content_type`, never cached (every answer is the state of the moment).
pub fn text_response(
    status: StatusCode,
    content_type: &'static str,
    text: impl Into<Bytes>,
) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .header(CACHE_CONTROL, "no-store")
        .body(
            Full::new(text.into())
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("valid response")
}
